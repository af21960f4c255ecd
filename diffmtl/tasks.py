"""Timestep tasks: cluster boundaries, stratified timestep sampling, the per-cluster loss vector.

A clustering is an int array `boundaries` [k, 2] of inclusive 0-based intervals [l_i, r_i] that
cover 0..T-1 in order (or, for a specialist of the negative transfer gap, only its interval of
timesteps). Each interval is one task for the MTL method.

Batch layout (DESIGN.md). A global batch of B examples is drawn in the canonical layout
[k, B / k]: row i holds cluster i's examples. Training splits the second axis into M
micro-batches of N = B / (M k), giving the view [M, k, N] (`microbatch_view`); N is the axis
sharded over devices. Every random draw is made in the canonical layout from keys that do not
depend on M or on the number of devices, so all of them compute the same thing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def uniform_boundaries(num_timesteps: int, k: int, first: int = 0) -> np.ndarray:
    """k equal-width intervals of first..first+T-1 (the authors' training code: first = 0),
    [k, 2] int32.

    Interval i is first + [floor(i T / k), floor((i + 1) T / k) - 1]; widths differ by <= 1.
    """
    edges = first + (np.arange(k + 1) * num_timesteps) // k
    return np.stack([edges[:-1], edges[1:] - 1], axis=1).astype(np.int32)


def check_boundaries(boundaries: np.ndarray, first: int, last: int) -> None:
    """Raises ValueError unless `boundaries` [k, 2] covers first..last with contiguous intervals."""
    b = np.asarray(boundaries)
    if b.ndim != 2 or b.shape[1] != 2 or b.shape[0] < 1:
        raise ValueError(f"boundaries must have shape [k, 2], got {b.shape}")
    starts, ends = b[:, 0], b[:, 1]
    if starts[0] != first or ends[-1] != last:
        raise ValueError(f"boundaries must start at {first} and end at {last}: {b.tolist()}")
    if np.any(ends < starts) or np.any(starts[1:] != ends[:-1] + 1):
        raise ValueError(f"boundaries must be contiguous non-empty intervals: {b.tolist()}")


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
