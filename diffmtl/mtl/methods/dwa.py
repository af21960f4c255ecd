"""Dynamic Weight Average (Liu et al. 2019, MTAN): weight each task by how slowly it falls.

w_i = softmax(r / T)_i with r_i = Lbar_i(n - 1) / Lbar_i(n - 2), the ratio of the task's mean
loss over the last two windows, temperature T = 2 (their default); equal weights for the first
two windows. The original averages per epoch and multiplies by K (the weights sum to K); an
epoch of a diffusion model is long and noisy-free enough to be a poor unit, so we average over
windows of `window` steps (ASSUMPTION, 100 by default) and drop the K (the weights sum to 1, the
mean's scale). Invariant to a per-task loss scale (ratios).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base


class DWAState(NamedTuple):
    running_sum: jax.Array  # [k] losses summed over the current window
    count: jax.Array  # [] steps in the current window
    last: jax.Array  # [k] mean of the last complete window
    before_last: jax.Array  # [k] mean of the one before
    windows: jax.Array  # [] complete windows so far
    weights: jax.Array  # [k]


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
    temperature: float = base.option(2.0, "> 0", lambda v: v > 0, "T of the softmax (official).")
    window: int = base.option(
        100, ">= 1", lambda v: v >= 1, "Steps per 'epoch': the loss ratios compare window means."
    )


@base.takes_options(Options)
def dwa(num_tasks: int, *, options) -> optax.GradientTransformationExtraArgs:
    """DWA over k = num_tasks clusters (one backward pass)."""
    temperature, window = options.temperature, options.window

    def init(params):
        del params
        zeros = jnp.zeros((num_tasks,), jnp.float32)
        uniform = jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)
        zero = jnp.zeros((), jnp.int32)
        return DWAState(zeros, zero, zeros, zeros, zero, uniform)

    def update(updates, state, params=None, *, task_losses, **extra):
        del extra
        updates = base.combine_if_per_task(updates, params, num_tasks, state.weights)
        running = state.running_sum + jax.lax.stop_gradient(task_losses).astype(jnp.float32)
        count = state.count + 1
        closes = count >= window
        mean = running / count
        last = jnp.where(closes, mean, state.last)
        before_last = jnp.where(closes, state.last, state.before_last)
        windows = state.windows + closes.astype(jnp.int32)
        ratio = last / jnp.where(before_last > 0, before_last, 1.0)
        weights = jnp.where(
            windows >= 2, jax.nn.softmax(ratio / temperature), 1.0 / num_tasks
        ).astype(jnp.float32)
        new = DWAState(
            jnp.where(closes, 0.0, running),
            jnp.where(closes, 0, count),
            last,
            before_last,
            windows,
            weights,
        )
        return updates, new

    return optax.GradientTransformationExtraArgs(init, update)


METHOD = base.Method(
    name="dwa",
    constructor=dwa,
    options=Options,
    loss_weights=base.last_weights,
    formula="w = softmax(r / T), r_i = Lbar_i(n-1) / Lbar_i(n-2) over windows",
    source="Liu et al. 2019 (MTAN)",
)
