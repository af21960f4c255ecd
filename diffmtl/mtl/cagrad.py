"""CAGrad (Liu et al. 2021): the mean gradient g0, moved to improve the worst task within a ball.

As their official code: x = argmin_{x in simplex} x'G b + c ||g0|| sqrt(x'Gx) (b = 1/k,
||g0||^2 = b'Gb, c = 0.4), g_x = sum_i x_i g_i, update (g0 + c ||g0|| / ||g_x|| g_x) / (1 +
c^2) (their default rescale=1). The inner problem is solved by accelerated projected gradient
on the trace-normalised G (their code: scipy SLSQP on the host); the weights are then
w = (b + c ||g0|| / ||g_x|| x) / (1 + c^2). c = 0 is the mean gradient.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffmtl.mtl import base, qp

EPS = 1e-8


def cagrad_weights(gram, c: float) -> jnp.ndarray:
    """[k] weights of CAGrad's update for the Gram matrix [k, k]."""
    k = gram.shape[0]
    m = qp.normalised(gram)
    b = jnp.full((k,), 1.0 / k, jnp.float32)
    g0_norm = jnp.sqrt(b @ m @ b + EPS)

    def grad(x):
        return m @ b + c * g0_norm * (m @ x) / jnp.sqrt(x @ m @ x + EPS)

    # The objective's gradient is Lipschitz with about |M| (1 + c g0 / |g_x|); a short step.
    x = qp.fista(grad, qp.project_to_simplex, b, 0.1)
    gx_norm = jnp.sqrt(x @ m @ x + EPS)
    return (b + c * g0_norm / gx_norm * x) / (1.0 + c**2)


METHOD = base.gram_method(
    "cagrad",
    lambda gram, options: cagrad_weights(gram, options.c),
    options={"c": 0.4},  # The radius of the ball around g0, relative to ||g0|| (official).
    checks=(("c", lambda v: v >= 0, ">= 0"),),
    formula="(g0 + c|g0|/|g_x| g_x)/(1+c^2), x = argmin_simplex <g_x, g0> + c|g0||g_x|",
    source="Liu et al. 2021",
)
