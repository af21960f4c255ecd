"""FAMO (Liu et al. 2023, "FAMO: Fast Adaptive Multitask Optimization"): balance the rates at
which the task losses fall, with one backward pass.

Logits xi [k] (init 0), z = softmax(xi). The model follows the gradient of
sum_i z_i log(L_i) / c, c = sum_i z_i / L_i (not differentiated): loss weights w_i = z_i /
(c L_i), which sum to 1. After the step, xi takes an Adam step (learning rate 0.025, L2 weight
decay gamma = 0.01 as torch's Adam applies it: their defaults) along the softmax's transpose
Jacobian applied to delta_i = log L_i(before) - log L_i(after). Two departures, both to keep one
backward pass in the micro-batched, sharded step: w uses the previous step's L_i (the original
the current batch's), and delta compares consecutive steps' losses on their own batches (the
original re-evaluates the same batch after the update). Their min_losses offsets are 0 (the
default). Invariant to a per-task loss scale (log L).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base

EPS = 1e-8


class FAMOState(NamedTuple):
    logits: jax.Array  # xi [k]
    adam_state: optax.OptState
    previous_losses: jax.Array  # [k]; zeros before the first step
    weights: jax.Array  # [k] the loss weights the next step uses


def famo_weights(logits: jax.Array, losses: jax.Array) -> jax.Array:
    z = jax.nn.softmax(logits)
    inverse = z / (losses + EPS)
    return inverse / jnp.sum(inverse)


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
    learning_rate: float = base.option(
        0.025, "> 0", lambda v: v > 0, "Adam rate of the logits (official w_lr)."
    )
    gamma: float = base.option(
        0.01, ">= 0", lambda v: v >= 0, "Weight decay of the logits (official)."
    )


@base.takes_options(Options)
def famo(num_tasks: int, *, options) -> optax.GradientTransformationExtraArgs:
    """FAMO over k = num_tasks clusters (one backward pass; the weights move on the losses)."""
    opt = optax.chain(optax.add_decayed_weights(options.gamma), optax.adam(options.learning_rate))

    def init(params):
        del params
        xi = jnp.zeros((num_tasks,), jnp.float32)
        uniform = jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)
        return FAMOState(xi, opt.init(xi), jnp.zeros((num_tasks,), jnp.float32), uniform)

    def update(updates, state, params=None, *, task_losses, **extra):
        del extra
        updates = base.combine_if_per_task(updates, params, num_tasks, state.weights)
        losses = jax.lax.stop_gradient(task_losses).astype(jnp.float32)
        started = jnp.all(state.previous_losses > 0)
        delta = jnp.log(state.previous_losses + EPS) - jnp.log(losses + EPS)
        _, vjp = jax.vjp(jax.nn.softmax, state.logits)
        (grad_xi,) = vjp(jnp.where(started, delta, 0.0))
        xi_updates, adam_state = opt.update(grad_xi, state.adam_state, state.logits)
        logits = jnp.where(started, optax.apply_updates(state.logits, xi_updates), state.logits)
        adam_state = jax.tree.map(
            lambda new, old: jnp.where(started, new, old), adam_state, state.adam_state
        )
        new = FAMOState(logits, adam_state, losses, famo_weights(logits, losses))
        return updates, new

    return optax.GradientTransformationExtraArgs(init, update)


METHOD = base.Method(
    name="famo",
    constructor=famo,
    options=Options,
    loss_weights=base.last_weights,
    formula="w_i = z_i / (c L_i), z = softmax(xi), xi follows the loss decrease rates",
    source="Liu et al. 2023",
)
