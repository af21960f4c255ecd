"""MGDA (Desideri 2012; Sener & Koltun 2018): the min-norm point of the convex hull of the g_i.

w = argmin_{w >= 0, sum w = 1} ||sum_i w_i g_i||^2 = w'Gw, update sum_i w_i g_i: a common
descent direction (<update, g_i> >= ||update||^2 for every i) that is zero exactly when a convex
combination of the gradients vanishes (Pareto stationarity). Sener & Koltun's code solves the
QP by Frank-Wolfe (250 iterations); we solve it by accelerated projected gradient on the
trace-normalised G (qp.py), to the same minimiser. Their optional gradient normalisations
('l2', 'loss', 'loss+') default to none, as here. The weights sum to 1, so the update has the
scale of the mean gradient.
"""

from __future__ import annotations

from diffmtl.mtl import base, qp

METHOD = base.gram_method(
    "mgda",
    lambda gram, options: qp.min_norm_in_simplex(gram),
    formula="argmin_{w in simplex} |sum_i w_i g_i|",
    source="Desideri 2012; Sener & Koltun 2018",
)
