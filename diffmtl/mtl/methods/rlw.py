"""Random Loss Weighting (Lin et al. 2022, "Reasonable Effectiveness of Random Weighting").

Every step draws w = softmax(eps), eps ~ N(0, I_k) (their default distribution), from a key in
the state, so a resumed run draws the same weights. The weights sum to 1: the mean's scale.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base


class RLWState(NamedTuple):
    key: jax.Array
    weights: jax.Array  # [k] the weights of the next step


def _draw(key, num_tasks: int) -> jax.Array:
    return jax.nn.softmax(jax.random.normal(key, (num_tasks,), jnp.float32))


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
    seed: int = base.option(
        0, "an integer >= 0", lambda v: isinstance(v, int) and v >= 0, "Seeds the random weights."
    )


@base.takes_options(Options)
def rlw(num_tasks: int, *, options) -> optax.GradientTransformationExtraArgs:
    """RLW over k = num_tasks clusters (one backward pass)."""
    seed = options.seed

    def init(params):
        del params
        key, use = jax.random.split(jax.random.PRNGKey(seed))
        return RLWState(key, _draw(use, num_tasks))

    def update(updates, state, params=None, *, task_losses=None, **extra):
        del task_losses, extra
        updates = base.combine_if_per_task(updates, params, num_tasks, state.weights)
        key, use = jax.random.split(state.key)
        return updates, RLWState(key, _draw(use, num_tasks))

    return optax.GradientTransformationExtraArgs(init, update)


METHOD = base.Method(
    name="rlw",
    constructor=rlw,
    options=Options,
    loss_weights=base.last_weights,
    formula="w = softmax(eps), eps ~ N(0, I), drawn every step",
    source="Lin et al. 2022",
)
