"""IMTL-G (Liu et al. 2021, "Towards Impartial Multi-task Learning"), the gradient part.

The update d = sum_i w_i g_i with sum_i w_i = 1 has equal projections on every unit gradient,
<d, g_i / |g_i|> the same for all i. In Gram terms (G w)_i = lambda |g_i|: w = G^+ n /
(1'G^+ n), n_i = |g_i| = sqrt(G_ii). The paper's closed form (differences to a reference task,
as LibMTL codes it) is this when G is invertible; the pseudo-inverse extends it to linearly
dependent gradients as torchjd does. Equal weights when the denominator vanishes (e.g. a zero
gradient). The weights sum to 1: the scale of the mean gradient.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffmtl.mtl import base, qp


def imtl_g_weights(gram) -> jnp.ndarray:
    m = qp.normalised(gram)
    k = gram.shape[0]
    norms = jnp.sqrt(jnp.maximum(jnp.diag(m), 0.0))
    v = jnp.linalg.pinv(m, hermitian=True) @ norms
    total = jnp.sum(v)
    ok = jnp.abs(total) > 1e-6 * jnp.sum(jnp.abs(v)) + 1e-12
    return jnp.where(ok, v / jnp.where(ok, total, 1.0), jnp.full((k,), 1.0 / k))


METHOD = base.gram_method(
    "imtl_g",
    lambda gram, options: imtl_g_weights(gram),
    formula="sum w = 1, <d, g_i/|g_i|> equal: w ~ G^+ |g|",
    source="Liu et al. 2021 (IMTL)",
)
