"""Task affinity (docs/method.md, docs/analysis.md): TAS(t1, t2) = cos(grad L_t1, grad L_t2),
averaged over checkpoints.

Every L_t is the training loss of timestep t on the same N images with the same noise (dropout
off): L_t(theta) = mean_n loss(x0_n, t, eps_n). The gradients of a chunk of c timesteps are one
vmapped backward pass over c x N images. Two ways to get the cosines of G timesteps:

  projected (dim = d > 0): each gradient is computed once and kept only as its count sketch
    (sketch.py), [G, d]; memory O(G d + c x params), G / c backward passes. Error about
    (1 - TAS^2) / sqrt(d), at most ~sqrt(2 / d) in standard deviation.
  exact (dim = 0): no projection; the Gram matrix block by block, recomputing chunk j's
    gradients for every chunk i <= j: memory O(c x params), (G/c)(G/c + 1)/2 passes. For
    small grids, and to validate the projection.

A grid of G < T timesteps (evenly spaced, 0 and T-1 included) is interpolated linearly along
both axes to T x T, with the diagonal set to 1 (a task's affinity with itself).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from diffmtl import models
from diffmtl.analysis.sketch import CountSketch, apply_count_sketch
from diffmtl.diffusion import losses, schedule
from diffmtl.mtl.base import gram_matrix

# grads(params, x0 [N, H, W, C], noise [N, H, W, C], t [c] int32) -> pytree of [c, *param shape].
TimestepGradients = Callable[[object, jax.Array, jax.Array, jax.Array], object]


def make_timestep_gradients(
    model: nn.Module, diffusion: schedule.Diffusion, labels: jax.Array | None = None
) -> TimestepGradients:
    """grad L_t for each t of a chunk (vmapped: one backward pass over c x N images); labels
    [N] int: the N images' classes, for a class-conditional model."""

    def task_loss(params, x0, noise, t):  # [] = L_t on the N images
        ts = jnp.full((x0.shape[0],), t, jnp.int32)
        x_t = schedule.q_sample(diffusion, x0, ts, noise)
        out = models.denoise(model, params, x_t, ts, labels)
        return jnp.mean(losses.per_example_loss(diffusion, out, x0, x_t, ts, noise))

    return jax.vmap(jax.grad(task_loss), in_axes=(None, None, None, 0))


def flatten_rows(tree) -> jax.Array:
    """Pytree of [c, ...] leaves -> [c, D], leaves in tree order."""
    return jnp.concatenate([x.reshape(x.shape[0], -1) for x in jax.tree.leaves(tree)], axis=1)


def _chunks(grid: np.ndarray, chunk_size: int) -> list[np.ndarray]:
    """Consecutive chunks of the grid, the last padded by repeating its final timestep (one
    compiled shape); callers drop the padding."""
    out = []
    for start in range(0, len(grid), chunk_size):
        chunk = grid[start : start + chunk_size]
        out.append(np.pad(chunk, (0, chunk_size - len(chunk)), mode="edge").astype(np.int32))
    return out


def _normalise_gram(gram: np.ndarray) -> np.ndarray:
    """Cosines from a Gram matrix [G, G]: G_ij / sqrt(G_ii G_jj), clipped to [-1, 1]."""
    norms = np.sqrt(np.maximum(np.diag(gram), 1e-300))
    return np.clip(gram / np.outer(norms, norms), -1.0, 1.0)


def make_sketched_gradients(grads: TimestepGradients) -> Callable:
    """Jitted (params, x0, noise, t [c], sketch) -> count-sketched gradients [c, d]."""

    @jax.jit
    def sketched(params, x0, noise, ts, count_sketch):
        return apply_count_sketch(count_sketch, flatten_rows(grads(params, x0, noise, ts)))

    return sketched


def make_gram_block(grads: TimestepGradients) -> Callable:
    """Jitted (params, x0, noise, t_a [c], t_b [c] or None) -> inner products [c, c] of their
    gradients (None: t_a with itself, one backward pass)."""

    @jax.jit
    def block(params, x0, noise, ts_a, ts_b):
        a = grads(params, x0, noise, ts_a)
        b = a if ts_b is None else grads(params, x0, noise, ts_b)
        return gram_matrix(a, b)

    return block


def projected_affinity(
    sketched: Callable,
    params,
    x0: jax.Array,
    noise: jax.Array,
    grid: np.ndarray,
    count_sketch: CountSketch,
    chunk_size: int,
) -> np.ndarray:
    """Cosines [G, G] of the count-sketched gradients of L_t for t in grid [G]
    (sketched: make_sketched_gradients)."""
    chunks = _chunks(grid, chunk_size)
    rows = [np.asarray(sketched(params, x0, noise, ts, count_sketch)) for ts in chunks]
    projected = np.concatenate(rows)[: len(grid)].astype(np.float64)  # [G, d]
    return _normalise_gram(projected @ projected.T)


def exact_affinity(
    block: Callable,
    params,
    x0: jax.Array,
    noise: jax.Array,
    grid: np.ndarray,
    chunk_size: int,
) -> np.ndarray:
    """Cosines [G, G] of the full gradients, one Gram block [c, c] per pair of chunks
    (block: make_gram_block)."""
    chunks = _chunks(grid, chunk_size)
    size = len(chunks) * chunk_size
    gram = np.zeros((size, size))
    for i, ts_i in enumerate(chunks):
        rows = slice(i * chunk_size, (i + 1) * chunk_size)
        for j in range(i, len(chunks)):
            cols = slice(j * chunk_size, (j + 1) * chunk_size)
            values = np.asarray(block(params, x0, noise, ts_i, None if j == i else chunks[j]))
            gram[rows, cols], gram[cols, rows] = values, values.T
    return _normalise_gram(gram[: len(grid), : len(grid)])


def interpolate_to_all_timesteps(tas: np.ndarray, grid: np.ndarray, num_timesteps: int):
    """TAS on grid [G] x grid -> [T, T]: linear along each axis, diagonal 1, symmetric."""
    if len(grid) == num_timesteps:
        return tas
    weights = np.stack(
        [np.interp(np.arange(num_timesteps), grid, column) for column in np.eye(len(grid))], 1
    )  # [T, G]; row t holds the two linear-interpolation weights of t.
    full = weights @ tas @ weights.T
    np.fill_diagonal(full, 1.0)
    return np.clip((full + full.T) / 2, -1.0, 1.0)
