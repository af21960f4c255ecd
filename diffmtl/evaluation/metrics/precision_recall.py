"""Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds, in JAX.

Each feature set spans a manifold: the union of balls around its points, each with the radius
to the point's k-th nearest neighbour in the same set (k = 3 as in the paper). Precision is the
fraction of generated samples inside the real manifold; recall the fraction of real samples
inside the generated one. Distances are computed in row blocks, so memory is O(block x n).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    """[m, d], [n, d] -> [m, n] squared Euclidean distances (float32, clipped at 0)."""
    sq = jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(sq, 0.0)


@functools.partial(jax.jit, static_argnums=2)
def _kth_neighbour(rows: jax.Array, points: jax.Array, k: int) -> jax.Array:
    # The smallest distance in each row is the point itself (0), hence k + 1.
    return -jax.lax.top_k(-_squared_distances(rows, points), k + 1)[0][:, k]


@jax.jit
def _inside(rows: jax.Array, points: jax.Array, radii: jax.Array) -> jax.Array:
    return jnp.any(_squared_distances(rows, points) <= radii[None, :], axis=1)


def _row_blocks(rows: np.ndarray, block: int):
    rows = np.asarray(rows, np.float32)
    return (rows[i : i + block] for i in range(0, len(rows), block))


def knn_radii(features: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """[n, d] -> [n] squared distance of each point to its k-th nearest other point."""
    points = jnp.asarray(features, jnp.float32)
    return np.concatenate([_kth_neighbour(b, points, k) for b in _row_blocks(features, block)])


def coverage(points: np.ndarray, manifold: np.ndarray, radii: np.ndarray, block: int = 1024):
    """Fraction of `points` [m, d] within radii [n] (squared) of some manifold point [n, d]."""
    manifold, radii = jnp.asarray(manifold, jnp.float32), jnp.asarray(radii)
    inside = [_inside(b, manifold, radii) for b in _row_blocks(points, block)]
    return float(np.mean(np.concatenate(inside)))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """real [n, d], fake [m, d] features -> (precision, recall)."""
    precision = coverage(fake, real, knn_radii(real, k))
    recall = coverage(real, fake, knn_radii(fake, k))
    return precision, recall
