"""Equal weighting: the vanilla and stratified-baseline objective (1/k) sum_i L_i."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base


class EqualWeightingState(NamedTuple):
    weights: jax.Array  # [k], all 1/k.


def equal(num_tasks: int) -> optax.GradientTransformationExtraArgs:
    """Returns sum_i g_i / k for per-cluster gradients; passes a weighted-loss gradient through."""

    def init(params):
        del params
        return EqualWeightingState(jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32))

    def update(updates, state, params=None, *, task_losses=None, **extra):
        del task_losses, extra
        updates = base.combine_if_per_task(updates, params, num_tasks, state.weights)
        return updates, state

    return optax.GradientTransformationExtraArgs(init, update)


def loss_weights(state: EqualWeightingState) -> jax.Array:
    """[k] weights of the per-cluster losses in the objective."""
    return state.weights


METHOD = base.Method(
    name="equal",
    constructor=equal,
    loss_weights=loss_weights,
    formula="(1/k) sum_i L_i",
    source="vanilla (k = 1) and the stratified baseline",
)
