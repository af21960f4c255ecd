"""UPGrad (Quinton & Rey 2024, torchjd): the mean of each gradient projected onto the dual cone.

Each g_i is projected onto {v : <v, g_j> >= 0 for all j}: the projection is sum_j w^i_j g_j with
w^i = argmin_{w >= e_i} w'Gw (the dual of the projection; qp.py), and the update is the mean of
the projections, weights (1/k) sum_i w^i. Non-conflicting (<update, g_j> >= 0 for all j) and
linear under a common scaling of the gradients. torchjd normalises G and adds 1e-4 to its
diagonal before its quadprog solve; we normalise by the trace and add nothing (the accelerated
projected gradient needs no regularisation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffmtl.mtl import base, qp


def upgrad_weights(gram: jax.Array, task_losses: jax.Array | None = None) -> jax.Array:
    """[k] weights: the mean over i of argmin_{w >= e_i} w'Gw, from G [k, k]."""
    del task_losses
    k = gram.shape[0]
    per_task = jax.vmap(lambda e: qp.min_norm_above(gram, e))(jnp.eye(k, dtype=jnp.float32))
    return per_task.mean(axis=0)


METHOD = base.gram_method(
    "upgrad",
    upgrad_weights,
    guarantee="non-conflicting: <update, g_j> >= 0 for every j",
    formula="mean_i of g_i projected onto the dual cone: w^i = argmin_{w >= e_i} w'Gw",
    source="Quinton & Rey 2024 (torchjd)",
)
upgrad = METHOD.constructor  # name(num_tasks, **options): the optax transform.
