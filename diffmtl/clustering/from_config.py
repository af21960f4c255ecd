"""What the trainer calls once before training: config.clustering -> boundaries [k, 2], and a
table of the intervals."""

from __future__ import annotations

import os

import numpy as np
from etils import epath

from diffmtl.clustering import costs, dp, intervals
from diffmtl.diffusion import schedule
from diffmtl.errors import UserError

METHODS = ("uniform", *costs.COSTS)


def load_tas(path: str, num_timesteps: int) -> np.ndarray:
    """Loads a task-affinity matrix [T, T] from a .npy file, checking shape and values."""
    if not path:
        raise UserError(
            "clustering.method='gradient' needs clustering.tas_path (a T x T .npy file)"
        )
    if not os.path.isfile(path):
        raise UserError(
            f"TAS file {path} does not exist: compute it first or fix clustering.tas_path"
        )
    try:
        tas = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"TAS file {path} is not a readable .npy array ({e})") from e
    if tas.shape != (num_timesteps, num_timesteps):
        raise UserError(
            f"TAS file {path} has shape {tas.shape}; diffusion.num_timesteps={num_timesteps} "
            f"needs ({num_timesteps}, {num_timesteps})"
        )
    if not np.all(np.isfinite(tas)):
        raise UserError(f"TAS file {path} has non-finite entries")
    return tas


def interval_cost(name: str, abar: np.ndarray, tas_path: str = "") -> np.ndarray:
    """The [T, T] interval cost `name` (costs.COSTS) for the schedule with abar [T]."""
    if name == "timestep":
        return costs.timestep_cost(abar.shape[0])
    if name == "snr":
        return costs.snr_cost(schedule.snr(abar))
    if name == "log_snr":
        return costs.log_snr_cost(schedule.log_snr(abar))
    if name == "gradient":
        return costs.gradient_cost(load_tas(tas_path, abar.shape[0]))
    raise UserError(f"clustering cost {name!r} is unknown; use one of {list(costs.COSTS)}")


def timestep_range(config) -> tuple[int, int]:
    """(first, last) timesteps trained on: clustering.timestep_range, or all of 0..T-1."""
    if config.clustering.timestep_range:
        first, last = config.clustering.timestep_range
        return int(first), int(last)
    return 0, config.diffusion.num_timesteps - 1


def _exists(path: str) -> bool:
    try:
        return epath.Path(path).exists()
    except Exception:  # A bucket this host cannot reach: treated as absent (dry runs only).
        return False


def placeholder_reason(config) -> str:
    """Why a dry run uses placeholder intervals ('' when it does not): gradient clusters whose
    TAS file is not there yet. The intervals change the step's values, not its shapes or cost."""
    cfg = config.clustering
    if cfg.method != "gradient" or (cfg.tas_path and _exists(cfg.tas_path)):
        return ""
    return (
        f"clustering.method='gradient' has no TAS file yet ({cfg.tas_path or 'no tas_path'}): "
        f"the dry run uses {cfg.k} uniform intervals in its place (same k, same cost)"
    )


def cluster_boundaries(config, placeholder: bool = False) -> np.ndarray:
    """[k, 2] int32 inclusive intervals from config.clustering (method, k, tas_path,
    timestep_range). placeholder (dry runs): uniform intervals where placeholder_reason says."""
    cfg = config.clustering
    first, last = timestep_range(config)
    if cfg.method == "uniform" or (placeholder and placeholder_reason(config)):
        boundaries = intervals.uniform_boundaries(last - first + 1, cfg.k, first)
    else:
        cost = interval_cost(cfg.method, schedule.schedule_alphas_cumprod(config), cfg.tas_path)
        boundaries = np.asarray(dp.interval_clustering(cost, cfg.k), np.int32)
    intervals.check_boundaries(boundaries, first, last)
    return boundaries


def boundaries_table(boundaries: np.ndarray, log_snr: np.ndarray) -> str:
    """A plain-text table: interval, t range, log-SNR range, share of timesteps."""
    lines = [f"{'interval':>8}  {'t range':>11}  {'log-SNR range':>17}  {'share':>6}"]
    for i, (lo, hi) in enumerate(np.asarray(boundaries)):
        share = (hi - lo + 1) / log_snr.shape[0]
        t_range = f"{lo}-{hi}"
        snr_range = f"{log_snr[lo]:+.2f} .. {log_snr[hi]:+.2f}"
        lines.append(f"{i:>8}  {t_range:>11}  {snr_range:>17}  {share:>6.1%}")
    return "\n".join(lines)
