"""Fixed per-cluster weights from the config: sum_i w_i L_i with w = mtl.fixed.weights.

The control the reproduction needs: train any learned weight profile (e.g. Nash-MTL's average
weights, read back from a run's events by tools/loss_weights.py) as a constant, to tell what a
dynamic method adds beyond the profile it converges to. normalize=True divides the weights by
their sum (the mean's scale, like equal weighting's 1/k); False uses them as given. Empty
weights are equal weighting. One backward pass (a loss-based method).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base


class FixedState(NamedTuple):
    weights: jax.Array  # [k], constant


def fixed_weights(weights, num_tasks: int, normalize: bool) -> jax.Array:
    """[k] float32 weights: `weights` (or 1/k each when empty), divided by their sum if asked."""
    w = jnp.full((num_tasks,), 1.0 / num_tasks) if len(weights) == 0 else jnp.asarray(weights)
    w = w.astype(jnp.float32)
    return w / jnp.sum(w) if normalize else w


def _valid(weights) -> bool:
    values = tuple(weights)
    return all(isinstance(v, int | float) and v >= 0 for v in values) and (
        not values or sum(values) > 0
    )


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
    weights: tuple = base.option(
        (),
        "() (equal) or k numbers >= 0, not all 0",
        _valid,
        "The per-cluster weights w (empty: 1/k each).",
    )
    normalize: bool = base.option(
        False,
        "True or False",
        lambda v: v in (False, True),
        "Divide w by its sum (the mean's scale).",
    )


@base.takes_options(Options)
def fixed(num_tasks: int, *, options) -> optax.GradientTransformationExtraArgs:
    """sum_i w_i g_i for per-cluster gradients; passes a weighted-loss gradient through."""
    weights, normalize = options.weights, options.normalize

    def init(params):
        del params
        return FixedState(fixed_weights(weights, num_tasks, normalize))

    def update(updates, state, params=None, *, task_losses=None, **extra):
        del task_losses, extra
        return base.combine_if_per_task(updates, params, num_tasks, state.weights), state

    return optax.GradientTransformationExtraArgs(init, update)


METHOD = base.Method(
    name="fixed",
    constructor=fixed,
    options=Options,
    loss_weights=base.last_weights,
    formula="sum_i w_i L_i, w = mtl.fixed.weights (constant; optionally divided by their sum)",
    source="a control: any learned profile as a constant",
)
