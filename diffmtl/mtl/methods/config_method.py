"""ConFIG (Liu et al. 2024, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
Networks"): one direction with equal positive cosine to every gradient, scaled by the sum of
the gradients' projections on it.

u_i = g_i / |g_i|; v = (U')^+ 1, the vector with <v, u_i> = 1 for all i (least squares when
the u_i are dependent); direction e = v / |v|; update (sum_j <g_j, e>) e. In Gram terms with the
cosine matrix C = D^-1 G D^-1 (D = diag |g_i|): v = sum_i c_i u_i with c = C^+ 1, |v|^2 = c'Cc,
and the weights are w_i = m c_i / (|g_i| |v|), m = sum_j (G w')_j for w' = c / (|g| |v|). Their
update sums over the tasks; we divide by k (the scale of the mean gradient, as every method here).
Non-conflicting: <update, g_i> = m |g_i| / |v| >= 0 when m >= 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffmtl.mtl import base, qp


def config_weights(gram: jax.Array, task_losses: jax.Array | None = None) -> jax.Array:
    """[k] weights of ConFIG's update, from G [k, k]."""
    del task_losses
    m = qp.normalised(gram)
    k = gram.shape[0]
    norms = jnp.sqrt(jnp.maximum(jnp.diag(m), 0.0))
    safe = jnp.where(norms > 0, norms, 1.0)
    cosines = m / safe[:, None] / safe[None, :]
    cosines = jnp.where((norms[:, None] > 0) & (norms[None, :] > 0), cosines, 0.0)
    c = jnp.linalg.pinv(cosines, hermitian=True) @ jnp.ones((k,), jnp.float32)
    v_norm = jnp.sqrt(jnp.maximum(c @ cosines @ c, 1e-30))
    direction = jnp.where(norms > 0, c / safe, 0.0) / v_norm  # e = sum_i direction_i g_i
    # sum_j <g_j, e> computed on G / tr and e on g / sqrt(tr): their product is the update's
    # coefficient on the g_i themselves, so the weights do not depend on the gradients' scale.
    magnitude = jnp.sum(m @ direction)
    return magnitude * direction / k


METHOD = base.gram_method(
    "config",
    config_weights,
    guarantee="non-conflicting: <update, g_i> = m |g_i| / |v| >= 0, equal cosines",
    formula="(sum_j <g_j, e>) e / k, e ~ (U')^+ 1 (equal cosine to every g_i)",
    source="Liu et al. 2024 (ConFIG)",
)
config = METHOD.constructor  # name(num_tasks, **options): the optax transform.
