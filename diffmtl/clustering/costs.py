"""Interval costs cost[l, r] (inclusive, 0-based) for the clustering DP, O(1) per entry.

timestep, SNR and log-SNR costs are sum_{t=l..r} |x_t - x_c| with x = t, SNR or log-SNR, and
the gradient cost is -sum_{t=l..r} TAS[c, t]; c = floor((l + r) / 2) for all (dp.py). Entries
below the diagonal (l > r) hold meaningless finite values: the DP ignores them.
"""

from __future__ import annotations

import numpy as np

from diffmtl.errors import UserError

COSTS = ("timestep", "snr", "log_snr", "gradient")


def _abs_deviation_cost(values: np.ndarray) -> np.ndarray:
    """cost[l, r] = sum_{t=l..r} |x_t - x_c| for a monotone x [T] -> [T, T].

    For non-decreasing x with prefix sums P (P_0 = 0), c = floor((l + r) / 2) and s = l + r:
      cost[l, r] = P_{r+1} + P_l - 2 P_c - (1 + s mod 2) x_c = G[l + r] + P_l + P_{r+1},
    a Hankel matrix G[l + r] (a strided view, no copy) plus a row and a column term: one
    broadcast pass builds the matrix.
    """
    x = np.asarray(values, np.float64)
    if x.ndim != 1 or x.shape[0] == 0 or not np.all(np.isfinite(x)):
        raise UserError("the per-timestep values (SNR or log-SNR) must be a finite 1-D array")
    steps = np.diff(x)
    if np.any(steps > 0) and np.any(steps < 0):
        raise UserError("SNR and log-SNR costs need values that are monotone in t")
    if np.any(steps < 0):
        x = -x  # |x_t - x_c| is unchanged; now x is non-decreasing.
    num_timesteps = x.shape[0]
    prefix = np.concatenate([[0.0], np.cumsum(x)])
    s = np.arange(2 * num_timesteps - 1)
    hankel = -2.0 * prefix[s // 2] - (1 + s % 2) * x[s // 2]  # G[s], [2T - 1].
    cost = np.lib.stride_tricks.sliding_window_view(hankel, num_timesteps) + prefix[:-1, None]
    cost += prefix[None, 1:]
    return cost


def timestep_cost(num_timesteps: int) -> np.ndarray:
    """cost[l, r] = sum_{t=l..r} |t - c| (exact integers in float64), [T, T]."""
    return _abs_deviation_cost(np.arange(num_timesteps, dtype=np.float64))


def snr_cost(snr: np.ndarray) -> np.ndarray:
    """cost[l, r] = sum_{t=l..r} |SNR_t - SNR_c|, [T, T]. Degenerate on raw SNR (see README)."""
    return _abs_deviation_cost(snr)


def log_snr_cost(log_snr: np.ndarray) -> np.ndarray:
    """cost[l, r] = sum_{t=l..r} |log SNR_t - log SNR_c|, [T, T]."""
    return _abs_deviation_cost(log_snr)


def gradient_cost(tas: np.ndarray) -> np.ndarray:
    """cost[l, r] = -sum_{t=l..r} TAS[c, t]: maximise affinity to the centre task, [T, T].

    With row prefix sums Q[c, j] = sum_{t<j} TAS[c, t], cost[l, r] = Q[c, l] - Q[c, r + 1].
    On an anti-diagonal l + r = s the centre c = s // 2 is fixed, so both terms are contiguous
    slices of row c: one pass per anti-diagonal, written with a strided slice (2x faster than
    gathering Q[c, l] for every entry).
    """
    tas = np.asarray(tas, np.float64)
    if tas.ndim != 2 or tas.shape[0] != tas.shape[1] or tas.shape[0] == 0:
        raise UserError(f"the task-affinity matrix must be square [T, T], got shape {tas.shape}")
    if not np.all(np.isfinite(tas)):
        raise UserError("the task-affinity matrix has non-finite entries")
    num_timesteps = tas.shape[0]
    prefix = np.zeros((num_timesteps, num_timesteps + 1))
    np.cumsum(tas, axis=1, out=prefix[:, 1:])
    cost = np.zeros((num_timesteps, num_timesteps))
    flat = cost.reshape(-1)
    step = max(num_timesteps - 1, 1)  # Flat distance between (l, r) and (l + 1, r - 1).
    for s in range(2 * num_timesteps - 1):
        c, lo = s // 2, max(0, s - num_timesteps + 1)  # l runs over lo..c, r = s - l.
        left_terms = prefix[c, lo : c + 1]
        right_terms = prefix[c, s - c + 1 : s - lo + 2][::-1]  # Q[c, r + 1] for l = lo..c.
        first = lo * num_timesteps + (s - lo)
        flat[first : c * num_timesteps + (s - c) + 1 : step] = left_terms - right_terms
    return cost
