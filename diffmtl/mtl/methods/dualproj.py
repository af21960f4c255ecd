"""DualProj (Quinton & Rey 2024, torchjd): the mean gradient projected onto the dual cone.

w = argmin_{w >= 1/k} w'Gw (qp.py): the projection of the mean gradient onto {v : <v, g_j> >= 0
for all j}, as weights of the g_i. Non-conflicting; equal to the mean when the mean already
conflicts with no task. torchjd's diagonal regularisation is left out as in upgrad.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffmtl.mtl import base, qp


def dualproj_weights(gram: jax.Array, task_losses: jax.Array | None = None) -> jax.Array:
    """[k] weights argmin_{w >= 1/k} w'Gw, from G [k, k]."""
    del task_losses
    k = gram.shape[0]
    return qp.min_norm_above(gram, jnp.full((k,), 1.0 / k, jnp.float32))


METHOD = base.gram_method(
    "dualproj",
    dualproj_weights,
    guarantee="non-conflicting: <update, g_j> >= 0 for every j",
    formula="mean gradient projected onto the dual cone: argmin_{w >= 1/k} w'Gw",
    source="Quinton & Rey 2024 (torchjd)",
)
dualproj = METHOD.constructor  # name(num_tasks, **options): the optax transform.
