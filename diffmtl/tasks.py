"""Timestep tasks: stratified timestep sampling, the micro-batch view, the per-cluster loss vector.

A clustering is an int array `boundaries` [k, 2] of inclusive 0-based intervals [l_i, r_i] that
cover 0..T-1 in order (or, for a specialist of the negative transfer gap, only its interval of
timesteps; clustering/intervals.py). Each interval is one task for the MTL method.

Batch layout (docs/method.md). A global batch of B examples is drawn in the canonical layout
[k, B / k]: row i holds cluster i's examples. Training splits the second axis into M
micro-batches of N = B / (M k), giving the view [M, k, N] (`microbatch_view`); N is the axis
sharded over devices. Every random draw is made in the canonical layout from keys that do not
depend on M or on the number of devices, so all of them compute the same thing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sample_timesteps(key: jax.Array, boundaries: jax.Array, per_cluster: int) -> jax.Array:
    """Stratified timesteps: exactly `per_cluster` per cluster, uniform inside its interval.

    Args:
      key: PRNG key.
      boundaries: [k, 2] int, inclusive intervals.
      per_cluster: B / k.

    Returns:
      t: [k, per_cluster] int32, t[i, j] uniform on [l_i, r_i].
    """
    k = boundaries.shape[0]
    low = boundaries[:, :1]
    high = boundaries[:, 1:] + 1
    return jax.random.randint(key, (k, per_cluster), low, high, dtype=jnp.int32)


def microbatch_view(x, num_microbatches: int):
    """Canonical [k, M * N, ...] -> micro-batch layout [M, k, N, ...] (NumPy or JAX arrays)."""
    k, per_cluster = x.shape[:2]
    n = per_cluster // num_microbatches
    return x.reshape((k, num_microbatches, n) + x.shape[2:]).swapaxes(0, 1)


def task_losses(per_example_loss: jax.Array) -> jax.Array:
    """Per-cluster loss vector: [..., k, N] per-example losses -> [k].

    Mean over every axis except the cluster axis (the second to last). Each cluster holds the
    same number of examples, so the mean of the k entries is the batch mean.
    """
    axes = tuple(i for i in range(per_example_loss.ndim) if i != per_example_loss.ndim - 2)
    return jnp.mean(per_example_loss, axis=axes)


def width_factors(boundaries: jax.Array, num_timesteps: int) -> jax.Array:
    """clustering.width_weighting's factors k |I_i| / T: [k, 2] inclusive intervals -> [k].

    B/k examples per cluster with t uniform inside it weight timestep t by (T / k) / |I_i|
    relative to vanilla's uniform t; multiplying cluster i's loss by k |I_i| / T undoes that, so
    the equal-weights stratified objective is vanilla's in expectation (1 for uniform clusters).
    """
    widths = (boundaries[:, 1] - boundaries[:, 0] + 1).astype(jnp.float32)
    return widths * boundaries.shape[0] / num_timesteps
