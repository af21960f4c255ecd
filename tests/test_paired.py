"""Paired statistics against scipy's paired t-test and hand-computed intervals; TOST's p on
cases whose answer is clear; seed pairing from a results.json."""

import numpy as np
import pytest
from scipy import stats

from diffmtl.analysis import paired
from diffmtl.errors import UserError


def test_paired_matches_scipy_and_a_hand_interval():
    d = np.array([0.4, -8.2, 2.4])  # the latent DiT's tuned guided pair (docs/results.md)
    s = paired.paired(d)
    assert (s.n, s.wins) == (3, 1)
    assert s.mean == pytest.approx(-1.8)
    assert s.sd == pytest.approx(np.sqrt(63.44 / 2))
    half = 4.302652729911275 * s.sd / np.sqrt(3)  # t(0.975, 2)
    assert (s.ci_low, s.ci_high) == (pytest.approx(-1.8 - half), pytest.approx(-1.8 + half))
    assert s.p == pytest.approx(stats.ttest_rel(d, np.zeros(3)).pvalue)
    assert s.text() == "-1.8, 95% CI [-15.8, +12.2], p = 0.64, 1/3 lower (n = 3)"


def test_one_seed_has_no_interval():
    s = paired.paired([2.5])
    assert s.n == 1 and np.isnan(s.ci_low) and s.text() == "+2.5 (n = 1)"


def test_tost_supports_equivalence_only_when_the_interval_fits_the_margin():
    tight = np.array([0.1, -0.2, 0.05, 0.0, -0.1, 0.15])
    assert paired.tost(tight, margin=1.0) < 0.01
    assert paired.tost(tight, margin=0.05) > 0.05
    wide = np.array([10.0, -12.0, 8.0])
    assert paired.tost(wide, margin=5.0) > 0.05


def test_seed_differences_pair_common_seeds_at_one_step():
    run = lambda row, seed, fid: {"row": row, "seed": seed, "evals": {"600": {"fid": fid}}}  # noqa: E731
    data = {"runs": {
        "a0": run("a", 0, 10.0), "a1": run("a", 1, 12.0), "a2": run("a", 2, 9.0),
        "b0": run("b", 0, 11.0), "b2": run("b", 2, 5.0),
    }}  # fmt: skip
    seeds, d = paired.seed_differences(data, "a", "b", 600)
    assert seeds == [0, 2] and d.tolist() == [-1.0, 4.0]
    with pytest.raises(
        UserError, match=r"no run of row 'row' has step 600: the rows are \['a', 'b'\]"
    ):
        paired.seed_differences(data, "row", "b", 600)
