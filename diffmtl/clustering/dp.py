"""Interval clustering of timesteps (docs/method.md): an exact DP, run once before training.

Partition timesteps 0..T-1 into k contiguous non-empty intervals [l_i, r_i] minimising
sum_i cost[l_i, r_i]. With D_j[i] the optimal cost of splitting 0..i into j intervals,
  D_1[i] = cost[0, i],   D_j[i] = min_{m < i} D_{j-1}[m] + cost[m + 1, i],
each level is one vectorised NumPy pass over the [T, T] cost matrix (O(k T^2) time, O(T^2)
memory), and D_j[T-1] for j = 1..k is the optimal total for every k' <= k at no extra cost.

Conventions (the same for every cost):
- centre of [l, r]: c = floor((l + r) / 2), the lower middle for even widths;
- ties: backtracking from the last interval takes, for each interval, the smallest start among
  the optimal ones (argmin's first index). So among optimal partitions the result has the
  lexicographically smallest (l_k, l_{k-1}, ..., l_2). For the timestep cost, whose widths
  199/201 tie with 200/200, this makes later intervals start as early as the optimum allows.

The authors' release differs (docs/method.md): its bounds are shifted by one, its last
bound is the literal 1000, it discards genuine zero-cost splits and returns floats; none of
that is reproduced here.
"""

from __future__ import annotations

import numpy as np

from diffmtl.errors import UserError


def _check_k(k: int, num_timesteps: int) -> None:
    if not 1 <= k <= num_timesteps:
        raise UserError(
            f"clustering.k={k} must be between 1 and the number of timesteps T={num_timesteps}"
        )


def _upper_triangle(cost: np.ndarray) -> np.ndarray:
    """Validated float64 copy of `cost` [T, T] with +inf below the diagonal (l > r)."""
    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1] or cost.shape[0] == 0:
        raise UserError(
            f"the interval cost must be a non-empty square [T, T] matrix, got {cost.shape}"
        )
    valid = np.triu(np.ones(cost.shape, bool))
    if not np.all(np.isfinite(cost) | ~valid):
        raise UserError(
            "the interval cost has non-finite entries on or above the diagonal (l <= r)"
        )
    return np.where(valid, cost, np.inf)


def optimal_costs(cost: np.ndarray, k: int) -> np.ndarray:
    """D [k, T]: D[j-1, i] = least cost of splitting 0..i into j intervals (inf if i + 1 < j)."""
    cost = _upper_triangle(cost)
    _check_k(k, cost.shape[0])
    return _optimal_costs(cost, k)


def _optimal_costs(cost: np.ndarray, k: int) -> np.ndarray:
    num_timesteps = cost.shape[0]
    table = np.full((k, num_timesteps), np.inf)
    table[0] = cost[0]
    for j in range(1, k):
        # candidates[m, i] = D_{j-1}[m] + cost[m + 1, i]; inf where m + 1 > i.
        table[j, 1:] = np.min(table[j - 1, :-1, None] + cost[1:, 1:], axis=0)
    return table


def _backtrack(cost: np.ndarray, table: np.ndarray, k: int) -> list[tuple[int, int]]:
    intervals = []
    end = cost.shape[0] - 1
    for j in range(k - 1, 0, -1):
        candidates = table[j - 1, :end] + cost[1 : end + 1, end]  # Over m = 0..end-1.
        m = int(np.argmin(candidates))  # First minimum: the smallest optimal start m + 1.
        intervals.append((m + 1, end))
        end = m
    intervals.append((0, end))
    return intervals[::-1]


def interval_clustering(cost: np.ndarray, k: int) -> list[tuple[int, int]]:
    """Exact minimum-cost partition of 0..T-1 into k contiguous intervals.

    Args:
      cost: [T, T]; cost[l, r] (l <= r) is the cost of the inclusive interval [l, r]. Entries
        below the diagonal are ignored.
      k: number of intervals, 1 <= k <= T.

    Returns:
      k inclusive (l, r) int pairs in order, covering 0..T-1 once; ties as in the module doc.
    """
    cost = _upper_triangle(cost)
    _check_k(k, cost.shape[0])
    return _backtrack(cost, _optimal_costs(cost, k), k)


def cost_versus_k(cost: np.ndarray, k: int) -> np.ndarray:
    """[k] optimal total cost for k' = 1..k clusters (one DP pass)."""
    return optimal_costs(cost, k)[:, -1]
