"""The box-constrained QP of UPGrad and DualProj, solved inside jit by accelerated projected
gradient, and the trace normalisation the Gram-based methods share.

  min_{w >= lower} w'Gw             (the projections onto the dual cone)
is k x k (k = the clusters, about 5): a fixed number of FISTA iterations (Beck & Teboulle
2009) on the cosine-scaled Gram matrix is cheap next to one backward pass, has no host round
trip and no data-dependent control flow; the KKT conditions hold to about 1e-4 of the largest
|g_i|^2 (tests/test_mtl_exact.py). Normalising G by its trace leaves every minimiser unchanged
and bounds the step's Lipschitz constant, so one step size fits all inputs. (MGDA and CAGrad
need exact answers and use Wolfe's algorithm: min_norm.py.)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

NUM_ITERATIONS = 2000


def normalised(gram: jax.Array) -> jax.Array:
    """G / trace(G) (G itself when the trace is zero): [k, k] float32."""
    gram = gram.astype(jnp.float32)
    trace = jnp.trace(gram)
    return gram / jnp.where(trace > 0, trace, 1.0)


def fista(
    grad_fn: Callable[[jax.Array], jax.Array],
    project: Callable[[jax.Array], jax.Array],
    w0: jax.Array,
    step: float,
    num_iterations: int = NUM_ITERATIONS,
) -> jax.Array:
    """Accelerated projected gradient: w [k] minimising a smooth convex f over a convex set."""

    def body(_, carry):
        w, y, t = carry
        w_next = project(y - step * grad_fn(y))
        t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        y_next = w_next + ((t - 1.0) / t_next) * (w_next - w)
        return w_next, y_next, t_next

    w, _, _ = jax.lax.fori_loop(0, num_iterations, body, (w0, w0, jnp.ones((), w0.dtype)))
    return w


def min_norm_above(gram: jax.Array, lower: jax.Array) -> jax.Array:
    """argmin_{w >= lower} w'Gw [k]: the projection of J'lower onto the dual cone of the
    gradients {v : <v, g_i> >= 0 for all i}, as weights of the gradients.

    Solved in v = D w, D = diag(|g_i|) (the cosine matrix C = D^-1 G D^-1 has a unit diagonal),
    so a gradient 1e4 times smaller than the others converges as fast as they do; the box
    w >= lower stays a box, v >= D lower. Step 1 / (2 k) (the largest eigenvalue of C <= k).
    """
    m = normalised(gram)
    k = gram.shape[0]
    d = jnp.sqrt(jnp.maximum(jnp.diag(m), 0.0))
    d = jnp.maximum(d, 1e-6 * jnp.max(d) + 1e-30)
    cosines = m / d[:, None] / d[None, :]
    low = d * lower
    v = fista(lambda v: 2.0 * cosines @ v, lambda v: jnp.maximum(v, low), low, 0.5 / k)
    return v / d
