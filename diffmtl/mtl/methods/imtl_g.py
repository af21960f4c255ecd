"""IMTL-G (Liu et al. 2021, "Towards Impartial Multi-task Learning"), the gradient part.

The update d = sum_i w_i g_i with sum_i w_i = 1 has equal projections on every unit gradient,
<d, g_i / |g_i|> the same for all i. In Gram terms (G w)_i = lambda |g_i|: w = G^+ n /
(1'G^+ n), n_i = |g_i| = sqrt(G_ii). The paper's closed form (differences to a reference task,
as LibMTL codes it) is this when G is invertible; the pseudo-inverse extends it to linearly
dependent gradients as torchjd does. Equal weights when the denominator vanishes (e.g. a zero
gradient). The weights sum to 1: the scale of the mean gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffmtl.mtl import base, qp

# C counts as singular below this ratio of its extreme eigenvalues (float32: about 1e2 eps).
COSINE_RANK_TOL = 1e-5


def imtl_g_weights(gram: jax.Array, task_losses: jax.Array | None = None) -> jax.Array:
    """[k] weights for the Gram matrix [k, k].

    Solved in the cosine space where it is well conditioned: with n the norms and C = G / n n'
    (unit diagonal), G w = lambda n is C (n w) = lambda 1, so w ~ C^-1 1 / n: scale-free, exact
    when one gradient is orders of magnitude smaller than the others (the pseudo-inverse of the
    raw float32 G drops that task's eigenvalue). Where C is singular (linearly dependent or
    zero gradients), w ~ G^+ n, torchjd's pseudo-inverse answer.
    """
    del task_losses
    m = qp.normalised(gram)
    k = gram.shape[0]
    norms = jnp.sqrt(jnp.maximum(jnp.diag(m), 0.0))
    positive = norms > 0
    safe = jnp.where(positive, norms, 1.0)
    cosine = jnp.where(
        positive[:, None] & positive[None, :], m / (safe[:, None] * safe[None, :]), 0.0
    )
    eigenvalues = jnp.linalg.eigvalsh(cosine)
    regular = jnp.all(positive) & (eigenvalues[0] > COSINE_RANK_TOL * eigenvalues[-1])
    scaled = jnp.linalg.solve(jnp.where(regular, cosine, jnp.eye(k)), jnp.ones(k)) / safe
    pinv = jnp.linalg.pinv(m, hermitian=True) @ norms
    v = jnp.where(regular, scaled, pinv)
    total = jnp.sum(v)
    ok = jnp.abs(total) > 1e-6 * jnp.sum(jnp.abs(v)) + 1e-12
    return jnp.where(ok, v / jnp.where(ok, total, 1.0), jnp.full((k,), 1.0 / k))


METHOD = base.gram_method(
    "imtl_g",
    imtl_g_weights,
    guarantee="equal projections <update, g_i / |g_i|> on every unit gradient",
    formula="sum w = 1, <d, g_i/|g_i|> equal: w ~ G^+ |g|",
    source="Liu et al. 2021 (IMTL)",
)
imtl_g = METHOD.constructor  # name(num_tasks, **options): the optax transform.
