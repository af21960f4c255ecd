"""Count sketch: a random linear projection R^D -> R^d that costs O(D) to apply and O(D) to store.

Coordinate j of a parameter-space vector g goes to bucket h(j) in 0..d-1 with a random sign
s(j), both uniform and independent:  (S g)_b = sum_{j: h(j) = b} s(j) g_j  (Charikar et al.
2002; the sparse Johnson-Lindenstrauss transform with one nonzero per column).

Inner products are unbiased, E <S g, S u> = <g, u>, with variance
    Var <S g, S u> = (|g|^2 |u|^2 + <g, u>^2 - 2 sum_j g_j^2 u_j^2) / d  <=  2 |g|^2 |u|^2 / d.
For unit g, u with cosine c the projected cosine <Sg, Su> / (|Sg| |Su|) has standard deviation
about (1 - c^2) / sqrt(d) when no coordinate dominates (the Gaussian-projection value), never
much above sqrt(2 / d), and a bias of order 1 / d (tests/test_task_affinity.py measures both).
A dense Gaussian projection would cost d x D per gradient: 10^10 multiply-adds for the default
model at d = 8192, against 10^6 here.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp


class CountSketch(flax.struct.PyTreeNode):
    """h: bucket per coordinate, int32 [D]; s: sign per coordinate, float32 [D] of +-1; d."""

    buckets: jax.Array
    signs: jax.Array
    dim: int = flax.struct.field(pytree_node=False)


def make_count_sketch(num_params: int, dim: int, seed: int) -> CountSketch:
    """A count sketch R^num_params -> R^dim drawn from PRNGKey(seed)."""
    bucket_key, sign_key = jax.random.split(jax.random.PRNGKey(seed))
    buckets = jax.random.randint(bucket_key, (num_params,), 0, dim, jnp.int32)
    signs = jax.random.rademacher(sign_key, (num_params,), jnp.float32)
    return CountSketch(buckets, signs, dim)


def apply_count_sketch(sketch: CountSketch, vectors: jax.Array) -> jax.Array:
    """S applied to each row: vectors [n, D] -> [n, d] (float32)."""
    signed = vectors.astype(jnp.float32) * sketch.signs[None, :]
    out = jnp.zeros((vectors.shape[0], sketch.dim), jnp.float32)
    return out.at[:, sketch.buckets].add(signed)
