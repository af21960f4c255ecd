"""Aligned-MTL (Senushkin et al. 2023): align the task gradients' principal components.

As their code (ProcrustesSolver, scale_mode 'min'): eigendecompose G = V diag(lambda) V', keep
the eigenvalues above max(lambda) k eps (the rank r), B = sqrt(lambda_r) V_r diag(lambda_r^-1/2)
V_r' (lambda_r the smallest kept), and the aligned gradients J'B have equal, orthogonal
principal components of norm sqrt(lambda_r). Their update is the sum of the aligned gradients,
weights B 1; we divide by k (every method here has the scale of the mean gradient on equal
orthogonal gradients, because diffmtl averages the cluster losses).

Not non-conflicting in general: <update, g_i> = sqrt(lambda_r) (G^1/2 1)_i / k, and G^1/2 1 can
have negative entries (on the sampled gradient matrices of tests/test_mtl_library.py cosines
down to -0.9 occur), unlike MGDA, UPGrad, DualProj and ConFIG, which the tests hold to it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffmtl.mtl import base


def aligned_mtl_weights(gram: jax.Array, task_losses: jax.Array | None = None) -> jax.Array:
    """[k] weights B 1 / k of the aligned gradients, from G [k, k]."""
    del task_losses
    gram = gram.astype(jnp.float32)
    k = gram.shape[0]
    lam, vectors = jnp.linalg.eigh(gram)  # ascending
    tol = jnp.max(lam) * k * jnp.finfo(jnp.float32).eps
    kept = lam > tol
    smallest = jnp.min(jnp.where(kept, lam, jnp.inf))
    scale = jnp.where(kept, jnp.sqrt(smallest / jnp.where(kept, lam, 1.0)), 0.0)
    b = (vectors * scale[None, :]) @ vectors.T
    weights = b.sum(axis=1) / k
    return jnp.where(jnp.any(kept), weights, jnp.zeros((k,)))


METHOD = base.gram_method(
    "aligned_mtl",
    aligned_mtl_weights,
    formula="w = sqrt(lambda_min) V Lambda^-1/2 V' 1 / k (G = V Lambda V')",
    source="Senushkin et al. 2023",
)
aligned_mtl = METHOD.constructor  # name(num_tasks, **options): the optax transform.
