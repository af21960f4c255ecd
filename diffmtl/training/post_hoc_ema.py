"""Post-hoc EMA (Karras et al. 2024, EDM2): choose the EMA length after training.

During training the state tracks power-function EMA profiles: after t steps, profile gamma
averages the parameters theta_1..theta_t with weights w_tau = (tau^(g+1) - (tau-1)^(g+1)) /
t^(g+1), the discrete form of the density (g+1) tau^g / t^(g+1) on [0, t]. The update that
keeps it is ema <- beta ema + (1 - beta) theta_t with beta = (1 - 1/t)^(g+1) (beta = 0 at t = 1,
so there is no warm-up to choose). A profile's width relative to its length is sigma_rel,
sigma_rel^2 = (g+1) / ((g+2)^2 (g+3)); by default two are tracked (sigma_rel 0.05 and 0.10,
train.ema_profiles) and snapshots of both are saved every train.ema_snapshot_every_steps.

Afterwards any profile (t_r, g_r) is approximated by a combination sum_i x_i of the snapshots
(t_i, g_i): x solves the least-squares problem A x = b in L2 of the densities, A_ij = <p_i, p_j>,
b_i = <p_i, p_r>, whose inner products have a closed form. The parameters are then combined
one snapshot at a time (`reconstruct`), never all in memory. Why: one EMA length is an arbitrary
choice that interacts with the training length, the learning rate and guidance; EDM2 measured
it and made it a post-hoc one. Range: sigma_rel in (0, 0.28] (gamma >= 0); a target between the
tracked profiles reconstructs best (docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffmtl.errors import UserError

MAX_SIGMA_REL = 0.28  # gamma = 0 gives 0.2887; larger sigma_rel would need gamma < 0.


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The exponent gamma >= 0 of the profile of relative width sigma_rel: the largest real root
    of gamma^3 + 7 gamma^2 + (16 - 1/sigma_rel^2) gamma + (12 - 1/sigma_rel^2) = 0."""
    if not 0 < sigma_rel <= MAX_SIGMA_REL:
        raise UserError(f"sigma_rel={sigma_rel} must be in (0, {MAX_SIGMA_REL}]")
    inv = sigma_rel**-2
    roots = np.roots([1.0, 7.0, 16.0 - inv, 12.0 - inv])
    return float(roots[np.abs(roots.imag) < 1e-9].real.max())


def gamma_to_sigma_rel(gamma: float) -> float:
    return float(np.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))))


def update_profiles(profiles: tuple, params, steps_done: jax.Array, gammas: Sequence[float]):
    """The profiles after a step: profile i <- beta_i profile_i + (1 - beta_i) params, with
    beta_i = (1 - 1/t)^(gamma_i + 1) and t = steps_done >= 1 (the step just taken included)."""
    t = steps_done.astype(jnp.float32)
    out = []
    for profile, gamma in zip(profiles, gammas, strict=True):
        beta = (1.0 - 1.0 / t) ** (gamma + 1.0)
        out.append(jax.tree.map(lambda e, p, b=beta: b * e + (1.0 - b) * p, profile, params))
    return tuple(out)


def discrete_weights(t: int, gamma: float) -> np.ndarray:
    """float64 [t]: the weight of theta_1..theta_t in profile gamma after t steps (they sum to
    1): the closed form that update_profiles' recurrence realises."""
    tau = np.arange(1, t + 1, dtype=np.float64)
    return (tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)) / float(t) ** (gamma + 1)


def _inner(t_a, g_a, t_b, g_b):
    """<p_a, p_b> of the densities (g+1) tau^g / t^(g+1) on [0, t] (broadcasting)."""
    t_a, g_a, t_b, g_b = (np.asarray(v, np.float64) for v in (t_a, g_a, t_b, g_b))
    low = np.minimum(t_a, t_b)
    return (
        (g_a + 1) * (g_b + 1) * low ** (g_a + g_b + 1)
        / ((g_a + g_b + 1) * t_a ** (g_a + 1) * t_b ** (g_b + 1))
    )  # fmt: skip


def solve_weights(snapshots: Sequence[tuple[int, float]], target: tuple[int, float]) -> np.ndarray:
    """float64 [n]: the coefficients of the snapshots (t_i, gamma_i) whose combination best
    matches the profile target = (t_r, gamma_r) in L2 (least squares; rank-deficient systems
    take the minimum-norm solution)."""
    t, g = (np.array(v, np.float64) for v in zip(*snapshots, strict=True))
    gram = _inner(t[:, None], g[:, None], t[None, :], g[None, :])
    rhs = _inner(t, g, target[0], target[1])
    return np.linalg.lstsq(gram, rhs, rcond=None)[0]


def reconstruct(load: Callable[[int], object], weights: Iterable[float]):
    """sum_i weights[i] * load(i) over parameter trees, loading one snapshot at a time."""
    total = None
    for i, x in enumerate(weights):
        scaled = jax.tree.map(lambda p, x=x: np.asarray(p, np.float64) * x, load(i))
        total = scaled if total is None else jax.tree.map(np.add, total, scaled)
    return jax.tree.map(lambda p: p.astype(np.float32), total)
