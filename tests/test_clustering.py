"""Interval clustering: brute force on every small case, cost closed forms, the paper's boundaries,
validation, and the trainer's use of it."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from diffmtl.clustering import (
    cost_versus_k,
    from_config,
    gradient_cost,
    interval_clustering,
    log_snr_cost,
    snr_cost,
    timestep_cost,
)
from diffmtl.diffusion import schedule as diffusion
from diffmtl.errors import UserError
from diffmtl.training import resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def brute_force(cost, k):
    """All compositions of 0..T-1 into k intervals: (best total, the documented tie-break pick).

    Tie-break: among optimal partitions, the lexicographically smallest (l_k, ..., l_2).
    """
    T = cost.shape[0]
    best = None
    for cuts in itertools.combinations(range(1, T), k - 1):
        starts, ends = (0, *cuts), (*(c - 1 for c in cuts), T - 1)
        total = sum(cost[lo, hi] for lo, hi in zip(starts, ends, strict=True))
        key = (total, tuple(reversed(starts[1:])))
        if best is None or key < best[0]:
            best = (key, list(zip(starts, ends, strict=True)))
    return best[0][0], best[1]


def total(cost, intervals):
    return sum(cost[lo, hi] for lo, hi in intervals)


@pytest.mark.parametrize("T", range(1, 13))
def test_brute_force_with_ties_zero_and_negative_costs(T):
    rng = np.random.default_rng(T)
    for k in range(1, T + 1):
        for _ in range(3):
            cost = rng.integers(-2, 3, (T, T)).astype(float)  # Many exact ties, zeros, negatives.
            best_total, best = brute_force(cost, k)
            got = interval_clustering(cost, k)
            assert got == best
            assert total(cost, got) == best_total


@pytest.mark.parametrize("T", [5, 9, 12])
def test_brute_force_on_real_valued_costs_and_cost_versus_k(T):
    cost = np.random.default_rng(T).normal(size=(T, T))
    curve = cost_versus_k(cost, T)
    for k in range(1, T + 1):
        best_total, _ = brute_force(cost, k)
        got = interval_clustering(cost, k)
        assert total(cost, got) == pytest.approx(best_total, abs=1e-12)
        assert curve[k - 1] == pytest.approx(best_total, abs=1e-12)


def test_a_genuine_zero_cost_split_is_found():
    """The authors' code discards splits whose cost is exactly 0; the optimum here is one."""
    cost = np.ones((6, 6))
    cost[0, 1] = cost[2, 5] = 0.0
    assert interval_clustering(cost, 2) == [(0, 1), (2, 5)]


def test_large_random_partition_properties():
    T, k = 300, 7
    cost = np.abs(np.random.default_rng(0).normal(size=(T, T)))
    got = interval_clustering(cost, k)
    assert len(got) == k and got[0][0] == 0 and got[-1][1] == T - 1
    assert all(lo <= hi for lo, hi in got)
    assert all(a[1] + 1 == b[0] for a, b in zip(got, got[1:], strict=False))
    assert all(isinstance(v, int) for pair in got for v in pair)
    rng = np.random.default_rng(1)
    for _ in range(200):  # No random partition beats the optimum.
        cuts = np.sort(rng.choice(np.arange(1, T), k - 1, replace=False))
        starts, ends = np.r_[0, cuts], np.r_[cuts - 1, T - 1]
        assert total(cost, got) <= total(cost, zip(starts, ends, strict=True)) + 1e-9


def brute_abs_cost(x, lo, hi):
    return np.abs(x[lo : hi + 1] - x[(lo + hi) // 2]).sum()


@pytest.mark.parametrize("builder", [snr_cost, log_snr_cost])
def test_value_costs_match_their_definition(builder):
    x = np.sort(np.random.default_rng(3).lognormal(size=17))[::-1]  # Decreasing, like SNR.
    cost = builder(x)
    for lo, hi in itertools.combinations_with_replacement(range(17), 2):
        assert cost[lo, hi] == pytest.approx(brute_abs_cost(x, lo, hi), abs=1e-9)


def test_timestep_cost_is_exact_and_ties_are_broken_early():
    cost = timestep_cost(1000)
    assert cost[0, 4] == 6 and cost[10, 13] == 4  # |t - c| with c = floor((l + r) / 2).
    got = interval_clustering(cost, 5)
    equal_widths = [(200 * i, 200 * i + 199) for i in range(5)]
    assert total(cost, got) == total(cost, equal_widths)  # Both optimal: an exact tie.
    assert got == [(0, 198), (199, 397), (398, 597), (598, 798), (799, 999)]


def test_gradient_cost_matches_its_definition():
    tas = np.random.default_rng(4).normal(size=(13, 13))
    cost = gradient_cost(tas)
    for lo, hi in itertools.combinations_with_replacement(range(13), 2):
        assert cost[lo, hi] == pytest.approx(-tas[(lo + hi) // 2, lo : hi + 1].sum(), abs=1e-9)


@pytest.mark.parametrize(
    "schedule,name,expected",
    [
        ("linear", "snr", [(0, 0), (1, 1), (2, 4), (5, 17), (18, 999)]),
        ("linear", "log_snr", [(0, 152), (153, 393), (394, 623), (624, 822), (823, 999)]),
        ("cosine", "log_snr", [(0, 132), (133, 371), (372, 652), (653, 880), (881, 999)]),
    ],
)
def test_paper_boundaries(schedule, name, expected):
    """The boundaries docs/method.md reports for T = 1000, k = 5 (0-based, lower-middle centre)."""
    abar = diffusion.alphas_cumprod(diffusion.beta_schedule(schedule, 1000))
    assert interval_clustering(from_config.interval_cost(name, abar), 5) == expected


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: interval_clustering(np.zeros((4, 4)), 0), "clustering.k=0"),
        (lambda: interval_clustering(np.zeros((4, 4)), 5), "clustering.k=5"),
        (lambda: interval_clustering(np.zeros((4, 3)), 2), "square"),
        (lambda: interval_clustering(np.full((3, 3), np.nan), 2), "non-finite"),
        (lambda: gradient_cost(np.zeros((3, 4))), "square"),
        (lambda: gradient_cost(np.full((3, 3), np.inf)), "non-finite"),
        (lambda: from_config.interval_cost("entropy", np.ones(3) / 2), "unknown"),
    ],
)
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_non_finite_below_the_diagonal_is_ignored():
    cost = np.triu(np.ones((4, 4)))
    cost[3, 0] = np.nan
    assert interval_clustering(cost, 2) == [(0, 0), (1, 3)]


def test_tas_file_checks(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        from_config.load_tas(str(tmp_path / "absent.npy"), 4)
    np.save(tmp_path / "small.npy", np.eye(3))
    with pytest.raises(UserError, match=r"shape \(3, 3\)"):
        from_config.load_tas(str(tmp_path / "small.npy"), 4)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable"):
        from_config.load_tas(str(tmp_path / "junk.npy"), 4)


@pytest.mark.parametrize("method", from_config.METHODS)
def test_config_to_boundaries(method, tiny_config, tmp_path):
    tiny_config.clustering.method = method
    if method == "gradient":
        t = np.arange(1000)
        np.save(tmp_path / "tas.npy", np.exp(-np.abs(t[:, None] - t[None, :]) / 100.0))
        tiny_config.clustering.tas_path = str(tmp_path / "tas.npy")
    b = from_config.cluster_boundaries(tiny_config)
    assert b.shape == (5, 2) and b.dtype == np.int32
    table = from_config.boundaries_table(b, np.linspace(5, -5, 1000))
    assert len(table.splitlines()) == 6


def test_resume_with_other_boundaries_is_refused():
    b = np.array([[0, 499], [500, 999]])
    resume.check_resumed_boundaries(b, b.copy(), "w")
    with pytest.raises(UserError, match="trained with clusters"):
        resume.check_resumed_boundaries(b, np.array([[0, 399], [400, 999]]), "w")


def run_cli(*args):
    cmd = [sys.executable, "-m", "diffmtl.clustering", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_cli_prints_intervals_and_writes_the_figure(tmp_path):
    out = tmp_path / "clusters.png"
    result = run_cli("--schedule=cosine", "--T=100", "--k=3", "--cost=log_snr", f"--out={out}")
    assert result.returncode == 0, result.stderr
    assert "optimal total cost for k' = 1..k" in result.stdout
    assert out.stat().st_size > 0
    bad = run_cli("--cost=entropy", f"--out={out}")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in bad.stderr
