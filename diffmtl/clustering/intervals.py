"""Cluster boundaries [k, 2]: k inclusive 0-based intervals [l_i, r_i] that cover first..last in
order. The uniform clustering (the authors' training code) and the check every clustering passes.
"""

from __future__ import annotations

import numpy as np


def uniform_boundaries(num_timesteps: int, k: int, first: int = 0) -> np.ndarray:
    """k equal-width intervals of first..first+T-1 (the authors' training code: first = 0),
    [k, 2] int32.

    Interval i is first + [floor(i T / k), floor((i + 1) T / k) - 1]; widths differ by <= 1.
    """
    edges = first + (np.arange(k + 1) * num_timesteps) // k
    return np.stack([edges[:-1], edges[1:] - 1], axis=1).astype(np.int32)


def check_boundaries(boundaries: np.ndarray, first: int, last: int) -> None:
    """Raises ValueError unless `boundaries` [k, 2] covers first..last with contiguous intervals."""
    b = np.asarray(boundaries)
    if b.ndim != 2 or b.shape[1] != 2 or b.shape[0] < 1:
        raise ValueError(f"boundaries must have shape [k, 2], got {b.shape}")
    starts, ends = b[:, 0], b[:, 1]
    if starts[0] != first or ends[-1] != last:
        raise ValueError(f"boundaries must start at {first} and end at {last}: {b.tolist()}")
    if np.any(ends < starts) or np.any(starts[1:] != ends[:-1] + 1):
        raise ValueError(f"boundaries must be contiguous non-empty intervals: {b.tolist()}")
