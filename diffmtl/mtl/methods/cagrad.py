"""CAGrad (Liu et al. 2021): the mean gradient g0, moved to improve the worst task within a ball.

As their official code: x = argmin_{x in simplex} x'Gb + c ||g0|| sqrt(x'Gx) (b = 1/k,
||g0||^2 = b'Gb, c = 0.4), g_x = sum_i x_i g_i, update (g0 + c ||g0|| / ||g_x|| g_x) / (1 +
c^2) (their default rescale=1): weights w = (b + c ||g0|| / ||g_x|| x) / (1 + c^2). c = 0 is the
mean gradient.

The inner problem, F(u) = <u, g0> + r ||u|| over u in conv{g_i} (r = c ||g0||), is solved
exactly (their code: scipy SLSQP on the host). Since r ||u|| = min_{t > 0} r (||u||^2 / t + t)
/ 2, min F = min_t phi(t) with phi convex, and for each t the minimiser over u is the point of
the hull closest to -(t / r) g0: a minimum-norm point of conv{g_i + (t / r) g0}, solved by
Wolfe's algorithm (min_norm.py). phi'(t) has the sign of t - ||u(t)||, so t* is the root of
t - ||u(t)|| in [0, max_i ||g_i||], found by bisection: a root of a monotone function is found
to float32 precision, where the minimum of phi's values would only be found to sqrt(eps).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from diffmtl.mtl import base, min_norm, qp

EPS = 1e-30  # Only guards a zero norm: a larger floor would bias a small ||g_x||.
BISECTIONS = 40  # Halves the bracket [0, max |g_i|] to 1e-12 of its length: below float32.


def hull_point_nearest(m: jax.Array, b: jax.Array, shift: jax.Array) -> jax.Array:
    """Weights x [k] of the point of conv{g_i} nearest to -shift * g0 (g0 = sum_i b_i g_i),
    from the Gram matrix m [k, k] of the g_i."""
    k = m.shape[0]
    ones = jnp.ones((k,), m.dtype)
    mb = m @ b
    shifted = m + shift * (mb[:, None] * ones[None, :] + ones[:, None] * mb[None, :])
    return min_norm.min_norm_point(shifted + shift**2 * (b @ mb))


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
    c: float = base.option(
        0.4,
        ">= 0",
        lambda v: v >= 0,
        "Radius of the ball around g0, relative to ||g0|| (official 0.4; 0 is the mean gradient).",
    )


@base.takes_options(Options)
def cagrad_weights(gram: jax.Array, task_losses: jax.Array | None = None, *, options) -> jax.Array:
    """[k] weights of CAGrad's update for the Gram matrix [k, k]."""
    del task_losses
    c = options.c
    k = gram.shape[0]
    m = qp.normalised(gram)
    b = jnp.full((k,), 1.0 / k, jnp.float32)
    if c == 0:  # The mean gradient (and r = 0 would put the hull's points at infinity).
        return b
    g0_norm = jnp.sqrt(b @ m @ b + EPS)
    r = c * g0_norm

    def norm_at(t):
        x = hull_point_nearest(m, b, t / r)
        return x, jnp.sqrt(jnp.maximum(x @ m @ x, 0.0))

    def bisect(_, bracket):
        low, high = bracket
        middle = 0.5 * (low + high)
        below = middle < norm_at(middle)[1]  # phi still falling: t* lies above.
        return jnp.where(below, middle, low), jnp.where(below, high, middle)

    high = jnp.sqrt(jnp.max(jnp.diag(m)))
    low, high = jax.lax.fori_loop(0, BISECTIONS, bisect, (jnp.zeros(()), high))
    x, _ = norm_at(0.5 * (low + high))
    gx_norm = jnp.sqrt(x @ m @ x + EPS)
    return (b + c * g0_norm / gx_norm * x) / (1.0 + c**2)


METHOD = base.gram_method(
    "cagrad",
    cagrad_weights,
    guarantee="maximises the worst task's first-order decrease within |d - g0| <= c |g0|",
    formula="(g0 + c|g0|/|g_x| g_x)/(1+c^2), x = argmin_simplex <g_x, g0> + c|g0||g_x|",
    source="Liu et al. 2021",
)
cagrad = METHOD.constructor  # name(num_tasks, **options): the optax transform.
