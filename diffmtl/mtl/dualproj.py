"""DualProj (Quinton & Rey 2024, torchjd): the mean gradient projected onto the dual cone.

w = argmin_{w >= 1/k} w'Gw (qp.py): the projection of the mean gradient onto {v : <v, g_j> >= 0
for all j}, as weights of the g_i. Non-conflicting; equal to the mean when the mean already
conflicts with no task. torchjd's diagonal regularisation is left out as in upgrad.py.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffmtl.mtl import base, qp


def dualproj_weights(gram) -> jnp.ndarray:
    k = gram.shape[0]
    return qp.min_norm_above(gram, jnp.full((k,), 1.0 / k, jnp.float32))


METHOD = base.gram_method(
    "dualproj",
    lambda gram, options: dualproj_weights(gram),
    formula="mean gradient projected onto the dual cone: argmin_{w >= 1/k} w'Gw",
    source="Quinton & Rey 2024 (torchjd)",
)
