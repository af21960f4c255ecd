"""Figures of the analysis tools: TAS heatmaps (against t and log-SNR) and the NTG bar chart."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from etils import epath  # noqa: E402


def save_figure(fig, path: str) -> None:
    """Writes `fig` as a PNG to a local path or a bucket and closes it."""
    with epath.Path(path).open("wb") as f:  # A local path or a bucket.
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_task_affinity(path: str, tas: np.ndarray, log_snr: np.ndarray, title: str) -> None:
    """TAS [T, T] as two heatmaps: axes timestep t, and axes log-SNR(t) (as in the paper)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"wspace": 0.3})
    num_timesteps = tas.shape[0]
    image = axes[0].imshow(
        tas,
        origin="lower",
        cmap="viridis",
        vmin=-1,
        vmax=1,
        extent=(0, num_timesteps, 0, num_timesteps),
    )
    axes[0].set(xlabel="timestep t", ylabel="timestep t", title=title)
    axes[1].pcolormesh(log_snr, log_snr, tas, cmap="viridis", vmin=-1, vmax=1, shading="nearest")
    axes[1].set(xlabel="log SNR(t)", ylabel="log SNR(t)", title=f"{title} against log-SNR")
    fig.colorbar(image, ax=axes, shrink=0.85, label="cosine of task gradients")
    save_figure(fig, path)


def plot_negative_transfer_gap(path: str, intervals: np.ndarray, gaps: np.ndarray, title: str):
    """Bar per interval [I, 2] of NTG [I] (FID units); negative bars are negative transfer."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels = [f"[{lo}, {hi}]" for lo, hi in np.asarray(intervals)]
    colours = ["tab:red" if g < 0 else "tab:blue" for g in gaps]
    ax.bar(labels, gaps, color=colours)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set(xlabel="timestep interval served by its specialist", ylabel="NTG (FID)", title=title)
    save_figure(fig, path)
