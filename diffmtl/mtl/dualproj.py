"""DualProj (Quinton & Rey 2024, torchjd): the mean gradient projected onto the dual cone.

w = argmin_{w >= 1/k} w'Gw (qp.py): the projection of the mean gradient onto {v : <v, g_j> >= 0
for all j}, as weights of the g_i. Non-conflicting; equal to the mean when the mean already
conflicts with no task. torchjd's diagonal regularisation is left out as in upgrad.py.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from diffmtl.mtl import base, qp


def dualproj_weights(gram) -> jnp.ndarray:
    k = gram.shape[0]
    return qp.min_norm_above(gram, jnp.full((k,), 1.0 / k, jnp.float32))


def dualproj(num_tasks: int) -> optax.GradientTransformationExtraArgs:
    def weights_fn(gram, task_losses, key, extra):
        del task_losses, key
        return dualproj_weights(gram), extra

    return base.gram_weighting(num_tasks, weights_fn)


METHOD = base.Method(
    name="dualproj",
    transform=lambda num_tasks, options: dualproj(num_tasks),
    loss_weights=base.gram_state_weights,
    task_grads_on=base.always_needs_task_grads,
    kind="gram",
    formula="mean gradient projected onto the dual cone: argmin_{w >= 1/k} w'Gw",
    source="Quinton & Rey 2024 (torchjd)",
)
