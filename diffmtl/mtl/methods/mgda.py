"""MGDA (Desideri 2012; Sener & Koltun 2018): the min-norm point of the convex hull of the g_i.

w = argmin_{w >= 0, sum w = 1} ||sum_i w_i g_i||^2 = w'Gw, update sum_i w_i g_i: a common
descent direction (<update, g_i> >= ||update||^2 for every i) that is zero exactly when a convex
combination of the gradients vanishes (Pareto stationarity). Sener & Koltun's code solves the
QP by Frank-Wolfe (250 iterations); we solve it exactly by Wolfe's active-set algorithm
(min_norm.py: to the precision of one k x k solve, where a first-order solve in float32 stops
about sqrt(eps) short). Their optional gradient normalisations
('l2', 'loss', 'loss+') default to none, as here. The weights sum to 1, so the update has the
scale of the mean gradient.
"""

from __future__ import annotations

import jax

from diffmtl.mtl import base, min_norm


def mgda_weights(gram: jax.Array, task_losses: jax.Array | None = None) -> jax.Array:
    """[k] weights (on the simplex) of the min-norm point of conv{g_i}, from G [k, k]."""
    del task_losses
    return min_norm.min_norm_point(gram)


METHOD = base.gram_method(
    "mgda",
    mgda_weights,
    guarantee="<update, g_i> >= |update|^2 for every i (a common descent direction)",
    formula="argmin_{w in simplex} |sum_i w_i g_i|",
    source="Desideri 2012; Sener & Koltun 2018",
)
mgda = METHOD.constructor  # name(num_tasks, **options): the optax transform.
