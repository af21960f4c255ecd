"""Paired comparisons of two rows of a sweep, seed by seed: the mean difference with its 95%
confidence interval (Student's t, n - 1 degrees of freedom), the paired t-test's two-sided p,
the wins, and where a "no difference" is claimed, an equivalence test (TOST) at a stated margin.

Why: with 3 seeds a difference of a few FID points is not resolvable, and a report that says
"tie" without the interval overstates what the data show. Every paired claim in
docs/results.md carries these (tools/paired.py prints them from a results.json).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from diffmtl.errors import UserError


@dataclasses.dataclass(frozen=True)
class Paired:
    """Differences row - control over n paired seeds."""

    n: int
    mean: float
    sd: float  # sample standard deviation of the differences (n - 1); nan for n = 1
    ci_low: float  # 95% confidence interval of the mean difference; nan for n = 1
    ci_high: float
    p: float  # two-sided paired t-test of mean 0; nan for n = 1 or sd = 0
    wins: int  # differences < 0 (lower is better for FID and losses)

    def text(self, digits: int = 1) -> str:
        """'-1.8, 95% CI [-15.8, +12.2], p = 0.62, 1/3 lower (n = 3)'."""
        f = f"{{:+.{digits}f}}"
        if self.n < 2:
            return f"{f.format(self.mean)} (n = 1)"
        return (
            f"{f.format(self.mean)}, 95% CI [{f.format(self.ci_low)}, {f.format(self.ci_high)}], "
            f"p = {self.p:.2g}, {self.wins}/{self.n} lower (n = {self.n})"
        )


def paired(differences) -> Paired:
    """Paired statistics of `differences` [n] (row minus control, one per seed)."""
    d = np.asarray(differences, np.float64)
    n, mean = len(d), float(np.mean(d))
    if n < 2:
        return Paired(
            n, mean, float("nan"), float("nan"), float("nan"), float("nan"), int(mean < 0)
        )
    sd = float(np.std(d, ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n))
    p = float(2 * stats.t.sf(abs(mean) / (sd / np.sqrt(n)), n - 1)) if sd > 0 else float("nan")
    return Paired(n, mean, sd, mean - half, mean + half, p, int(np.sum(d < 0)))


def tost(differences, margin: float) -> float:
    """p-value of the two one-sided tests that the mean difference lies within (-margin, +margin):
    below 0.05, "equivalent within the margin" is supported; the larger of the two one-sided
    p-values. n >= 2."""
    d = np.asarray(differences, np.float64)
    n, mean, se = len(d), float(np.mean(d)), float(np.std(d, ddof=1) / np.sqrt(len(d)))
    lower = stats.t.sf((mean + margin) / se, n - 1)  # H0: mean <= -margin
    upper = stats.t.cdf((mean - margin) / se, n - 1)  # H0: mean >= +margin
    return float(max(lower, upper))


def seed_differences(data: dict, row: str, control: str, step: int, metric: str = "fid"):
    """(seeds, row - control at `step` per common seed) of a results.json dict, `metric` one of
    an evaluation's fields ('fid', 'val_loss', ...)."""

    def by_seed(name):
        return {
            r["seed"]: r["evals"][str(step)][metric]
            for r in data["runs"].values()
            if r.get("row") == name and str(step) in r.get("evals", {})
        }

    a, b = by_seed(row), by_seed(control)
    for name, found in ((row, a), (control, b)):
        if not found:
            rows = sorted({r.get("row") for r in data["runs"].values()} - {None})
            raise UserError(f"no run of row {name!r} has step {step}: the rows are {rows}")
    seeds = sorted(set(a) & set(b))
    return seeds, np.array([a[s] - b[s] for s in seeds])
