"""TrainState: everything the next training step needs, and nothing on the host."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn


class TrainState(flax.struct.PyTreeNode):
    """Attributes:
    step: [] int32, steps taken.
    params: model parameters.
    ema_params: exponential moving average of params (used for sampling).
    opt_state: optax chain state; its first entry is the MTL method's state.
    rng: [2] uint32 raw PRNG key; step s uses fold_in(rng, s), so no key is drawn on the host.
    boundaries: [k, 2] int32 inclusive timestep intervals of the clusters.
    consecutive_skips: [] int32, steps skipped in a row for a non-finite loss or gradient.
    ema_profiles: tuple of params-shaped trees, the power-function EMA profiles of
      train.ema_profiles (post_hoc_ema.py), sharded like params; () when none are tracked.
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    rng: jax.Array
    boundaries: jax.Array
    consecutive_skips: jax.Array
    ema_profiles: tuple = ()


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    key: jax.Array,
    example_shape: tuple[int, int, int],
    boundaries: jax.Array,
    num_classes: int = 0,
    num_ema_profiles: int = 0,
) -> TrainState:
    """Initialises params from `key` and the rest from them. example_shape is (H, W, C);
    num_classes > 0: the model takes class labels; num_ema_profiles: post-hoc EMA profiles
    (their first update gives them the parameters whatever they start from)."""
    init_key, train_key = jax.random.split(key)
    x = jnp.zeros((1, *example_shape), jnp.float32)
    t = jnp.zeros((1,), jnp.int32)
    cond = jnp.zeros((1,), jnp.int32) if num_classes else None
    params = model.init({"params": init_key}, x, t, cond, train=False)["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        ema_params=jax.tree.map(jnp.copy, params),
        opt_state=tx.init(params),
        rng=train_key,
        boundaries=jnp.asarray(boundaries, jnp.int32),
        consecutive_skips=jnp.zeros((), jnp.int32),
        ema_profiles=tuple(jax.tree.map(jnp.copy, params) for _ in range(num_ema_profiles)),
    )


def ema_decay(step: jax.Array, max_decay: float) -> jax.Array:
    """EMA decay with warm-up: min(max_decay, (1 + step) / (10 + step))."""
    step = step.astype(jnp.float32)
    return jnp.minimum(max_decay, (1.0 + step) / (10.0 + step))
