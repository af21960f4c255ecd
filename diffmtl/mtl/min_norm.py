"""The minimum-norm point of a convex hull, exactly, by Wolfe's algorithm (Wolfe 1976), in jit.

Given the Gram matrix P [k, k] of points p_1..p_k, it returns the weights x [k] (x >= 0,
sum x = 1) of the point of conv{p_i} closest to the origin. MGDA's direction is this point of
the task gradients; CAGrad's inner problem is a sequence of them (cagrad.py).

Why Wolfe and not a first-order method: a projected-gradient solve in float32 stalls where the
objective stops changing, about sqrt(eps) from the minimiser in the point (3.5e-3 after 2,000
FISTA steps, measured), while Wolfe's active-set method ends on a face where it solves the
affine minimum-norm problem directly, to the precision of one small linear solve. It is finite
(each major cycle strictly lowers |x|) and its iteration count adapts to the problem: it stops
when no point lies beyond the current one's supporting hyperplane, |x|^2 - min_i <x, p_i> <=
tol * max_i |p_i|^2. The points it keeps (the corral) are affinely independent, so the
bordered system below is regular even when the p_i are linearly dependent or repeated.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Stopping tolerance relative to the largest |p_i|^2: a few float32 ulps.
TOLERANCE = 1e-6


class _Corral(NamedTuple):
    member: jax.Array  # [k] bool: the points in the current corral.
    x: jax.Array  # [k] convex weights, zero off the corral.
    major: jax.Array  # [] bool: next iteration is a major cycle (else a minor one).
    done: jax.Array  # [] bool
    iteration: jax.Array  # [] int32


def _affine_min_norm(gram: jax.Array, member: jax.Array) -> jax.Array:
    """argmin a'Pa over sum a = 1, a = 0 off `member`: [k] (the bordered system [P 1; 1' 0]
    [a; mu] = [0; 1], with the rows of non-members replaced by a_i = 0)."""
    k = gram.shape[0]
    both = member[:, None] & member[None, :]
    top = jnp.where(both, gram, jnp.eye(k, dtype=gram.dtype))
    border = member.astype(gram.dtype)
    system = jnp.block([[top, border[:, None]], [border[None, :], jnp.zeros((1, 1), gram.dtype)]])
    rhs = jnp.zeros((k + 1,), gram.dtype).at[k].set(1.0)
    return jnp.where(member, jnp.linalg.solve(system, rhs)[:k], 0.0)


def min_norm_point(gram: jax.Array, tol: float = TOLERANCE) -> jax.Array:
    """Weights x [k] (on the simplex) of the minimum-norm point of conv{p_i}, P = gram [k, k].

    The loop is bounded (50 k iterations; Wolfe's algorithm needs far fewer) so that a
    float32 tie cannot cycle forever; it returns its best point so far if it stops there.
    """
    gram = gram.astype(jnp.float32)
    k = gram.shape[0]
    scale = jnp.maximum(jnp.max(jnp.diag(gram)), 1e-30)
    p = gram / scale  # Scale-free tolerances; the minimiser's weights are unchanged.
    first = jnp.argmin(jnp.diag(p))
    start = _Corral(
        member=jnp.arange(k) == first,
        x=jax.nn.one_hot(first, k, dtype=jnp.float32),
        major=jnp.array(True),
        done=jnp.array(False),
        iteration=jnp.zeros((), jnp.int32),
    )

    def major_cycle(c: _Corral) -> _Corral:
        px = p @ c.x
        j = jnp.argmin(px)
        stop = (c.x @ px - px[j] <= tol) | c.member[j]
        member = c.member | (~stop & (jnp.arange(k) == j))
        return c._replace(member=member, major=stop, done=stop)

    def minor_cycle(c: _Corral) -> _Corral:
        a = _affine_min_norm(p, c.member)
        inside = jnp.all(jnp.where(c.member, a > 0, True))
        # Otherwise move from x towards a until the first weight reaches zero, and drop it.
        leaving = c.member & (a <= 0)
        ratios = jnp.where(leaving, c.x / jnp.where(leaving, c.x - a, 1.0), jnp.inf)
        theta = jnp.clip(jnp.min(ratios), 0.0, 1.0)
        x = jnp.where(inside, a, c.x + theta * (a - c.x))
        x = jnp.where(c.member, jnp.maximum(x, 0.0), 0.0)
        drop = ~inside & c.member & (x <= 1e-12 * jnp.max(x))
        # Keep at least the largest weight (a float32 tie could otherwise empty the corral).
        drop = drop & (jnp.arange(k) != jnp.argmax(x))
        x = jnp.where(drop, 0.0, x)
        return c._replace(member=c.member & ~drop, x=x / jnp.sum(x), major=inside)

    def body(c: _Corral) -> _Corral:
        c = jax.lax.cond(c.major, major_cycle, minor_cycle, c)
        return c._replace(iteration=c.iteration + 1)

    def running(c: _Corral) -> jax.Array:
        return ~c.done & (c.iteration < 50 * k)

    return jax.lax.while_loop(running, body, start).x
