"""Figures of the tools: TAS heatmaps (against t and log-SNR), the NTG bar chart, clusters over
log-SNR and the cost against k (also drawn into a notebook's axes).

Files are drawn on matplotlib Figure objects, never through pyplot, so importing this module
leaves the caller's backend alone (a notebook's inline plots keep working).
"""

from __future__ import annotations

import numpy as np
from etils import epath
from matplotlib.figure import Figure


def new_figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **kwargs):
    """(Figure, axes) outside pyplot: kwargs as Figure.subplots (squeeze, gridspec_kw)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Figure, path: str, dpi: int = 110) -> None:
    """Writes `fig` as a PNG to a local path or a bucket."""
    with epath.Path(path).open("wb") as f:  # A local path or a bucket.
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")


def draw_clusters(ax, boundaries, log_snr: np.ndarray, title: str = "clusters over log-SNR"):
    """log SNR(t) [T] with the clusters' intervals [k, 2] shaded on `ax`."""
    ax.plot(np.arange(log_snr.shape[0]), log_snr, color="black", linewidth=1)
    for i, (lo, hi) in enumerate(np.asarray(boundaries)):
        ax.axvspan(lo, hi + 1, alpha=0.2, color=f"C{i}")
        ax.axvline(lo, color="gray", linewidth=0.8)
    ax.set(xlabel="timestep t", ylabel="log SNR(t)", title=title)


def draw_cost_versus_k(ax, totals: np.ndarray, label: str | None = None) -> None:
    """The optimal total cost [K] for k = 1..K (dp.cost_versus_k) on `ax`."""
    ks = np.arange(1, len(totals) + 1)
    ax.plot(ks, totals, marker="o", label=label)
    ax.set(xlabel="k", ylabel="optimal total cost", title="cost versus k", xticks=ks)


def plot_task_affinity(path: str, tas: np.ndarray, log_snr: np.ndarray, title: str) -> None:
    """TAS [T, T] as two heatmaps: axes timestep t, and axes log-SNR(t) (as in the paper)."""
    fig, axes = new_figure((12, 4.8), 1, 2, gridspec_kw={"wspace": 0.3})
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
    fig, ax = new_figure((6, 3.6))
    labels = [f"[{lo}, {hi}]" for lo, hi in np.asarray(intervals)]
    colours = ["tab:red" if g < 0 else "tab:blue" for g in gaps]
    ax.bar(labels, gaps, color=colours)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set(xlabel="timestep interval served by its specialist", ylabel="NTG (FID)", title=title)
    save_figure(fig, path)
