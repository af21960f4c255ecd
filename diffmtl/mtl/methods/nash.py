"""Nash-MTL (Navon et al. 2022) over timestep clusters, solved inside jit.

With G the Gram matrix of the task gradients, the weights alpha > 0 solve G alpha = 1 / alpha
(the Nash bargaining solution). As the reference implementation (Navon et al.'s code, used by the
ANT release and torchjd) we solve it on M = G / nf, nf = ||G||_F, for stability: beta with
M beta = 1 / beta, then alpha = beta / sqrt(nf) solves the unnormalised system (G alpha =
sqrt(nf) M beta = sqrt(nf) / beta = 1 / alpha). (Before this fix diffmtl returned beta itself,
sqrt(nf) times too large: the update's norm was sqrt(nf / k) instead of 1 / sqrt(k).) M beta =
1 / beta is the stationarity condition of phi(b) = 0.5 b'Mb - sum_i log b_i, strictly convex in
b: we minimise phi by Newton's method, damped by a fraction-to-the-boundary rule (b stays
positive) and Armijo backtracking, warm-started from the previous alpha's direction at its
optimal scale. No cvxpy, no host round
trip. When a non-negative combination of the g_i vanishes (e.g. two exactly opposed gradients)
phi has no minimiser and b diverges: the solve is declared failed if it does not reach
||Mb - 1/b|| <= tol ||1/b|| with b <= max_alpha, and the previous alpha is kept and the
failure counted.

alpha is recomputed on update steps (every `update_every` steps, given [k, ...] gradients) and
kept between them, when the step passes the gradient of sum_i (alpha_i / k) L_i. Either way the
update, sum_i alpha_i g_i / k (norm 1 / sqrt(k) right after a solve), is clipped to global norm
`max_norm` (the optimizer chain does not clip again). A per-task loss scale s_i leaves the
update unchanged: G -> SGS gives alpha -> S^-1 alpha (tests/test_mtl_library.py).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base


class NashMTLState(NamedTuple):
    """The extra state of Nash-MTL inside base.GramState."""

    alpha: jax.Array  # [k] > 0.
    num_failures: jax.Array  # [] int32, solves that kept the previous alpha.
    residual: jax.Array  # [] relative residual of the last solve.


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
    update_every: int = base.option(
        25,
        ">= 1",
        lambda v: v >= 1,
        "Solve for alpha every n steps (per-cluster gradients on those steps only; between "
        "them the step takes the gradient of sum_i alpha_i L_i / k). The ANT release: 25.",
    )
    max_norm: float = base.option(
        1.0, "> 0", lambda v: v > 0, "Clip the update to this global norm (the ANT release: 1)."
    )
    num_iterations: int = base.option(
        30, ">= 1", lambda v: v >= 1, "Damped Newton iterations per solve."
    )
    tol: float = base.option(
        1e-3, "> 0", lambda v: v > 0, "A solve counts as failed (alpha kept) above this residual."
    )


def _phi(gram: jax.Array, a: jax.Array) -> jax.Array:
    return 0.5 * a @ gram @ a - jnp.sum(jnp.log(a))


def solve_alpha(
    gram: jax.Array, alpha0: jax.Array, options: Options = Options(), max_alpha: float = 1e6
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """alpha > 0 with gram alpha = 1/alpha (solved as beta = sqrt(nf) alpha on M = gram / nf),
    by options.num_iterations Newton steps, failed above options.tol.

    Returns (alpha, ok, relative residual ||M beta - 1/beta|| / ||1/beta||).
    """
    gram = gram.astype(jnp.float32)
    nf = jnp.maximum(jnp.linalg.norm(gram), 1e-30)
    m = gram / nf
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

    # Warm start: the previous alpha's direction at its best scale, s = sqrt(k / a'Ma)
    # (argmin_s phi(s a)), so neither the first solve nor a change of ||G|| starts far off.
    usable = jnp.all(alpha0 > 0) & jnp.all(jnp.isfinite(alpha0))
    direction = jnp.where(usable, alpha0, jnp.ones(k))
    curvature = direction @ m @ direction
    scale = jnp.where(curvature > 0, jnp.sqrt(k / jnp.where(curvature > 0, curvature, 1.0)), 1.0)
    start = direction * scale
    beta = jax.lax.fori_loop(0, options.num_iterations, newton, start)
    residual = jnp.linalg.norm(m @ beta - 1.0 / beta) / jnp.linalg.norm(1.0 / beta)
    ok = (residual <= options.tol) & jnp.all(jnp.isfinite(beta)) & (jnp.max(beta) <= max_alpha)
    return beta / jnp.sqrt(nf), ok, residual


def _clip(updates, max_norm: float):
    norm = optax.global_norm(updates)
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
    return jax.tree.map(lambda u: u * scale, updates)


@base.takes_options(Options)
def nash_mtl_weights(
    gram: jax.Array, task_losses: jax.Array | None = None, alpha0: jax.Array | None = None,
    *, options,
) -> jax.Array:  # fmt: skip
    """[k] weights alpha / k with G alpha = 1 / alpha, from G [k, k] (alpha0 [k]: the warm
    start, default ones; a failed solve returns alpha0 / k). The pure weighting; the transform
    keeps alpha between steps."""
    del task_losses
    k = gram.shape[0]
    alpha0 = jnp.ones((k,), jnp.float32) if alpha0 is None else alpha0
    alpha, ok, _ = solve_alpha(gram, alpha0, options)
    return jnp.where(ok, alpha, alpha0) / k


@base.takes_options(Options)
def nash_mtl(num_tasks: int, *, options) -> optax.GradientTransformationExtraArgs:
    """Nash-MTL; needs per-cluster gradients on its update steps (`needs_task_grads`; the
    host reads update_every there). Weights alpha / k."""
    max_norm = options.max_norm

    def weights_fn(gram, task_losses, key, state):
        del task_losses, key
        alpha, ok, residual = solve_alpha(gram, state.alpha, options)
        alpha = jnp.where(ok, alpha, state.alpha)
        failures = state.num_failures + (~ok).astype(jnp.int32)
        return alpha / num_tasks, NashMTLState(alpha, failures, residual)

    start = NashMTLState(
        jnp.ones((num_tasks,), jnp.float32), jnp.zeros((), jnp.int32), jnp.zeros(())
    )
    return base.gram_weighting(
        num_tasks, weights_fn, start, postprocess=lambda u: _clip(u, max_norm)
    )


def needs_task_grads(step: int, options) -> bool:
    """Per-cluster gradients on steps 0, update_every, 2 update_every, ..."""
    return step % options.update_every == 0


METHOD = base.Method(
    name="nash_mtl",
    constructor=nash_mtl,
    options=Options,
    loss_weights=base.last_weights,
    task_grads_on=needs_task_grads,
    metrics=lambda state: {
        "nash_failures": state.extra.num_failures,
        "nash_residual": state.extra.residual,
    },
    clips_updates=True,
    kind="gram",
    weights=nash_mtl_weights,
    guarantee="every g_i decreases: <update, g_i> = 1 / (k alpha_i) > 0 before the clip",
    formula="G alpha = 1/alpha, alpha > 0; update sum_i alpha_i g_i / k, clipped",
    source="Navon et al. 2022 (their code's normalisation)",
)
