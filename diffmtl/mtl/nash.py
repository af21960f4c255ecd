"""Nash-MTL (Navon et al. 2022) over timestep clusters, solved inside jit.

With G the Gram matrix of the task gradients and M = G / ||G||_F, the weights alpha > 0 solve
M alpha = 1 / alpha: the stationarity condition of phi(a) = 0.5 a'Ma - sum_i log a_i, which is
strictly convex in a (not in log a). We minimise phi by Newton's method in a, damped by a
fraction-to-the-boundary rule (a stays positive) and Armijo backtracking, warm-started from the
previous alpha. No cvxpy, no host round trip. When a non-negative combination of the g_i
vanishes (e.g. two exactly opposed gradients) phi has no minimiser and a diverges: the solve is
declared failed if it does not reach ||Ma - 1/a|| <= tol ||1/a|| with a <= max_alpha, and the
previous alpha is kept and the failure counted.

alpha is recomputed on update steps (every `update_every` steps, given [k, ...] gradients) and
kept between them, when the step passes the gradient of sum_i (alpha_i / k) L_i. Either way the
update, sum_i alpha_i g_i / k, is clipped to global norm `max_norm` (the optimizer chain does
not clip again).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base

CLIPS_UPDATES = True  # The chain must not add its own clip (optimizer.py).


class NashMTLState(NamedTuple):
    alpha: jax.Array  # [k] > 0.
    num_failures: jax.Array  # [] int32, solves that kept the previous alpha.
    residual: jax.Array  # [] relative residual of the last solve.


def _phi(gram: jax.Array, a: jax.Array) -> jax.Array:
    return 0.5 * a @ gram @ a - jnp.sum(jnp.log(a))


def solve_alpha(
    gram: jax.Array,
    alpha0: jax.Array,
    num_iterations: int = 30,
    tol: float = 1e-3,
    max_alpha: float = 1e6,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """alpha > 0 with M alpha = 1/alpha, M = gram / ||gram||_F.

    Returns (alpha, ok, relative residual ||M alpha - 1/alpha|| / ||1/alpha||).
    """
    gram = gram.astype(jnp.float32)
    m = gram / jnp.maximum(jnp.linalg.norm(gram), 1e-30)
    k = gram.shape[0]

    def newton(_, a):
        grad = m @ a - 1.0 / a
        hessian = m + jnp.diag(1.0 / a**2)
        step = -jnp.linalg.solve(hessian, grad)
        ratio = jnp.where(step < 0, -a / jnp.where(step < 0, step, -1.0), jnp.inf)
        t = jnp.minimum(1.0, 0.99 * jnp.min(ratio))  # Stay strictly positive.
        phi0, slope = _phi(m, a), grad @ step

        def shrink(t):
            return t * 0.5

        def too_long(t):
            return (_phi(m, a + t * step) > phi0 + 1e-4 * t * slope) & (t > 1e-8)

        t = jax.lax.while_loop(too_long, shrink, t)
        new = a + t * step
        return jnp.where(jnp.all(jnp.isfinite(new)) & jnp.all(new > 0), new, a)

    start = jnp.where(jnp.all(alpha0 > 0) & jnp.all(jnp.isfinite(alpha0)), alpha0, jnp.ones(k))
    alpha = jax.lax.fori_loop(0, num_iterations, newton, start)
    residual = jnp.linalg.norm(m @ alpha - 1.0 / alpha) / jnp.linalg.norm(1.0 / alpha)
    ok = (residual <= tol) & jnp.all(jnp.isfinite(alpha)) & (jnp.max(alpha) <= max_alpha)
    return alpha, ok, residual


def _clip(updates, max_norm: float):
    norm = optax.global_norm(updates)
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
    return jax.tree.map(lambda u: u * scale, updates)


def nash_mtl(
    num_tasks: int,
    update_every: int = 25,
    max_norm: float = 1.0,
    num_iterations: int = 30,
    tol: float = 1e-3,
) -> optax.GradientTransformationExtraArgs:
    """Nash-MTL; needs per-cluster gradients on its update steps (`needs_task_grads`)."""
    del update_every  # Used on the host by needs_task_grads; kept here for the signature.

    def init(params):
        del params
        return NashMTLState(
            jnp.ones((num_tasks,), jnp.float32), jnp.zeros((), jnp.int32), jnp.zeros(())
        )

    def update(updates, state, params=None, *, task_losses=None, **extra):
        del task_losses, extra
        if base.has_task_axis(updates, params, num_tasks):
            alpha, ok, residual = solve_alpha(
                base.gram_matrix(updates), state.alpha, num_iterations, tol
            )
            alpha = jnp.where(ok, alpha, state.alpha)
            state = NashMTLState(alpha, state.num_failures + (~ok).astype(jnp.int32), residual)
            updates = base.weighted_sum(updates, loss_weights(state))
        return _clip(updates, max_norm), state

    return optax.GradientTransformationExtraArgs(init, update)


def make(num_tasks: int, mtl_config) -> optax.GradientTransformationExtraArgs:
    return nash_mtl(num_tasks, mtl_config.nash_update_every, mtl_config.nash_max_norm)


def loss_weights(state: NashMTLState) -> jax.Array:
    """[k] alpha / k: the weights of the losses between alpha updates."""
    return state.alpha / state.alpha.shape[0]


def metrics(state: NashMTLState) -> dict[str, jax.Array]:
    return {"nash_failures": state.num_failures, "nash_residual": state.residual}


def needs_task_grads(step: int, mtl_config) -> bool:
    """Per-cluster gradients on steps 0, update_every, 2 update_every, ..."""
    return step % mtl_config.nash_update_every == 0
