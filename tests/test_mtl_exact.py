"""Each Gram-based weighting against its defining property or an exact float64 solve, on the
cases where float32 solvers break: one gradient 1e-2, 1e-3 or 1e-4 times the others, and
linearly dependent (rank-deficient, duplicated) gradients.

Oracles (the float64 references of benchmarks/mtl_vs_torchjd.py): MGDA, the minimum-norm point
of the hull by brute force over supports; CAGrad, scipy's SLSQP on its inner problem from
several starts; IMTL-G, equal
projections on the unit gradients; UPGrad and DualProj, no conflict and the KKT conditions
of their box QPs; Nash-MTL, G alpha = 1 / alpha; Aligned-MTL, orthogonal aligned components of
equal norm; ConFIG, equal cosines; PCGrad, a float64 transcription of its projections.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.mtl_vs_torchjd import brute_force_mgda, slsqp_cagrad
from diffmtl import mtl
from diffmtl.mtl import qp
from diffmtl.mtl.methods import pcgrad

TINY = [1e-2, 1e-3, 1e-4]


def jacobian(seed: int, k: int, case: str) -> np.ndarray:
    """[k, 40] float64 gradients: 'random' (a shared component, so some pairs conflict and some
    agree), 'tiny<s>' (row 0 scaled by s), 'rank' (rank k - 1), 'duplicate' (rows 0, 1 equal)."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(k, 40)) + rng.normal(size=40) * 0.5
    if case.startswith("tiny"):
        rows[0] *= float(case[4:])
    elif case == "rank":
        rows[-1] = 0.3 * rows[0] - 0.7 * rows[1]
    elif case == "duplicate":
        rows[1] = rows[0]
    return rows


CASES = [(seed, k, case) for seed, k in [(0, 2), (1, 3), (2, 5)]
         for case in ["random", *(f"tiny{s}" for s in TINY), "rank", "duplicate"]
         if not (k == 2 and case == "rank")]  # fmt: skip


def weights_of(name: str, rows: np.ndarray, **options) -> np.ndarray:
    """The method's float32 weighting of G = rows rows' (float64 product, then float32)."""
    fn = mtl.method(name).weights
    gram = jnp.asarray(rows @ rows.T, jnp.float32)
    return np.asarray(jax.jit(lambda g: fn(g, **options))(gram), np.float64)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("seed, k, case", CASES)
def test_mgda_is_the_exact_min_norm_point(seed, k, case):
    rows = jacobian(seed, k, case)
    expected = brute_force_mgda(rows @ rows.T) @ rows
    w = weights_of("mgda", rows)
    np.testing.assert_allclose(w.sum(), 1.0, atol=1e-6)
    assert np.all(w >= 0)
    assert relative(w @ rows, expected) <= 1e-5


@pytest.mark.parametrize("seed, k, case", [c for c in CASES if c[2] != "duplicate"])
@pytest.mark.parametrize("c", [0.4, 0.9])
def test_cagrad_matches_an_exact_float64_solve(seed, k, case, c):
    rows = jacobian(seed, k, case)
    expected = slsqp_cagrad(rows @ rows.T, c) @ rows
    assert relative(weights_of("cagrad", rows, c=c) @ rows, expected) <= 1e-5


@pytest.mark.parametrize("seed, k, case", CASES)
def test_imtl_g_projects_equally_on_every_unit_gradient(seed, k, case):
    rows = jacobian(seed, k, case)
    w = weights_of("imtl_g", rows)
    np.testing.assert_allclose(w.sum(), 1.0, atol=1e-6)
    if case in ("rank", "duplicate"):
        # Dependent gradients: the pseudo-inverse answer w ~ G^+ |g| (float64).
        gram = rows @ rows.T
        v = np.linalg.pinv(gram, hermitian=True) @ np.sqrt(np.diag(gram))
        assert relative(w @ rows, (v / v.sum()) @ rows) <= 1e-4
        return
    projections = rows @ (w @ rows) / np.linalg.norm(rows, axis=1)
    assert np.ptp(projections) <= 1e-5 * np.abs(projections).max()


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@pytest.mark.parametrize("seed, k, case", CASES)
def test_dual_cone_projections_satisfy_their_kkt_conditions(name, seed, k, case):
    """w = argmin_{w >= lower} w'Gw (DualProj: lower = 1/k; UPGrad: the mean of the solutions
    for lower = e_i) is non-conflicting, <d, g_j> >= 0, with complementary slackness: where
    w_j > lower_j, <d, g_j> = 0. Checked on each subproblem."""
    rows = jacobian(seed, k, case)
    gram = jnp.asarray(rows @ rows.T, jnp.float32)
    lowers = [np.full(k, 1.0 / k)] if name == "dualproj" else list(np.eye(k))
    scale = np.linalg.norm(rows, axis=1).max() ** 2
    for lower in lowers:
        w = np.asarray(qp.min_norm_above(gram, jnp.asarray(lower, jnp.float32)), np.float64)
        dots = rows @ (w @ rows)
        assert np.all(w >= lower - 1e-6 * np.abs(w).max())
        assert np.all(dots >= -1e-4 * scale)
        slack = w - lower > 1e-3 * np.abs(w).max()
        np.testing.assert_allclose(dots[slack], 0.0, atol=1e-4 * scale)


@pytest.mark.parametrize("seed, k, case", [c for c in CASES if c[2] in ("random", "tiny0.01")])
def test_nash_mtl_solves_its_bargaining_system(seed, k, case):
    """G alpha = 1 / alpha (alpha = k w) for independent gradients (dependent ones have no
    solution: the solve keeps the warm start)."""
    rows = jacobian(seed, k, case)
    alpha = k * weights_of("nash_mtl", rows)
    gram = rows @ rows.T
    assert np.all(alpha > 0)
    assert relative(gram @ alpha, 1.0 / alpha) <= 2e-3  # the solver's own tolerance, 1e-3


@pytest.mark.parametrize("seed, k, case", CASES)
def test_aligned_mtl_components_are_orthogonal_and_equal(seed, k, case):
    """The aligned gradients J'B (B = k diag-free weights matrix, w = B 1 / k) have Gram
    B G B = lambda_min P, P the projection onto G's kept eigenspace: checked through the
    update, whose squared norm is then lambda_min 1'P1 / k^2."""
    rows = jacobian(seed, k, case)
    gram = rows @ rows.T
    lam, vectors = np.linalg.eigh(gram)
    cutoff = lam.max() * k * np.finfo(np.float32).eps  # the method's rank cutoff (as theirs)
    if np.any((lam > cutoff / 10) & (lam < 100 * cutoff)):
        pytest.skip("an eigenvalue within float32's reach of the rank cutoff: rank ambiguous")
    kept = lam > cutoff
    projection = vectors[:, kept] @ vectors[:, kept].T
    expected = lam[kept].min() * np.ones(k) @ projection @ np.ones(k) / k**2
    w = weights_of("aligned_mtl", rows)
    np.testing.assert_allclose(w @ gram @ w, expected, rtol=1e-3)


@pytest.mark.parametrize("seed, k, case", [c for c in CASES if c[2] not in ("rank", "duplicate")])
def test_config_update_has_equal_cosines_with_every_gradient(seed, k, case):
    rows = jacobian(seed, k, case)
    update = weights_of("config", rows) @ rows
    cosines = rows @ update / np.linalg.norm(rows, axis=1) / np.linalg.norm(update)
    assert np.ptp(cosines) <= 1e-4


@pytest.mark.parametrize("seed, k, case", CASES)
def test_pcgrad_matches_a_float64_transcription(seed, k, case):
    rows = jacobian(seed, k, case)
    key = jax.random.PRNGKey(seed)
    orders = np.asarray(pcgrad.task_orders(key, k))
    projected = rows.copy()
    for i in range(k):
        for j in orders[i]:
            dot = projected[i] @ rows[j]
            if j != i and dot < 0:
                projected[i] = projected[i] - dot / (rows[j] @ rows[j]) * rows[j]
    expected = projected.mean(axis=0)
    w = weights_of("pcgrad", rows, key=key)
    assert relative(w @ rows, expected) <= 1e-4
