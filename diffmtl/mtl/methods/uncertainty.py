"""Uncertainty weighting (Kendall et al. 2018) over timestep clusters, as in ANT.

Objective: sum_i 0.5 (exp(-s_i) L_i / k + s_i), with one learned log-variance s_i per cluster
(initialised to 0) trained by its own Adam (learning rate 0.025, no weight decay, as the
authors). The model is updated with the current weights w_i = 0.5 exp(-s_i) / k, taken before
this step's s update; then s moves along d/ds_i = 0.5 (1 - exp(-s_i) L_i / k). At s = 0 the
weights are 1 / (2k): with k = 1 the model gradient is half the plain gradient (AdamW, next in
the chain, is invariant to that scale up to its epsilon). One backward pass: costs what vanilla
costs. Option `freeze_after` = n > 0 stops s after n updates (a diagnostic of UW's weights
running away as high-noise losses fall: the weights of step n are kept from then on).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base


class UncertaintyWeightingState(NamedTuple):
    log_variances: jax.Array  # s, [k].
    adam_state: optax.OptState  # Adam's state for s.


def loss_weights(state: UncertaintyWeightingState) -> jax.Array:
    """[k] model weights w_i = 0.5 exp(-s_i) / k."""
    s = state.log_variances
    return 0.5 * jnp.exp(-s) / s.shape[0]


def log_variance_gradient(log_variances: jax.Array, task_losses: jax.Array) -> jax.Array:
    """d objective / d s_i = 0.5 (1 - exp(-s_i) L_i / k): [k], [k] -> [k]."""
    k = log_variances.shape[0]
    return 0.5 * (1.0 - jnp.exp(-log_variances) * task_losses / k)


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
    learning_rate: float = base.option(
        0.025, "> 0", lambda v: v > 0, "Adam rate of the log-variances s (the ANT authors')."
    )
    freeze_after: int = base.option(
        0,
        "an integer >= 0",
        lambda v: isinstance(v, int) and v >= 0,
        "Stop learning s after this many steps (0: never; a diagnostic).",
    )


@base.takes_options(Options)
def uw(num_tasks: int, *, options) -> optax.GradientTransformationExtraArgs:
    """Weights per-cluster gradients by 0.5 exp(-s_i) / k and takes an Adam step on s (none
    after `freeze_after` > 0 steps: s, and so the weights, stay as they are)."""
    adam = optax.adam(options.learning_rate)
    freeze_after = options.freeze_after

    def init(params):
        del params
        s = jnp.zeros((num_tasks,), jnp.float32)
        return UncertaintyWeightingState(s, adam.init(s))

    def update(updates, state, params=None, *, task_losses, **extra):
        del extra
        updates = base.combine_if_per_task(updates, params, num_tasks, loss_weights(state))
        s = state.log_variances
        grad_s = log_variance_gradient(s, jax.lax.stop_gradient(task_losses))
        s_updates, adam_state = adam.update(grad_s, state.adam_state, s)
        new_s = optax.apply_updates(s, s_updates)
        if freeze_after:
            steps_taken = state.adam_state[0].count  # scale_by_adam's count: s updates so far.
            new_s = jnp.where(steps_taken < freeze_after, new_s, s)
        return updates, UncertaintyWeightingState(new_s, adam_state)

    return optax.GradientTransformationExtraArgs(init, update)


METHOD = base.Method(
    name="uw",
    constructor=uw,
    options=Options,
    loss_weights=loss_weights,
    formula="sum_i 0.5 (exp(-s_i) L_i / k + s_i), s learned",
    source="Kendall et al. 2018; ANT's UW",
)
