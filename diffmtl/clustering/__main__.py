"""Prints and plots a clustering of the T timesteps, with the optimal cost for every k' <= k.

python -m diffmtl.clustering --schedule=cosine --T=1000 --k=5 --cost=log_snr
python -m diffmtl.clustering --cost=gradient --tas=workdir/tas.npy --out=clusters.png
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from diffmtl.clustering import costs, dp, from_config  # noqa: E402
from diffmtl.diffusion import schedule  # noqa: E402
from diffmtl.errors import UserError, exit_on_user_error  # noqa: E402

FLAGS = flags.FLAGS


def plot(path: str, boundaries, log_snr, totals, tas=None) -> None:
    """Boundaries over the log-SNR curve (and the TAS heatmap), and the cost-versus-k curve."""
    panels = 3 if tas is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    t = np.arange(log_snr.shape[0])
    axes[0].plot(t, log_snr, color="black")
    for i, (lo, hi) in enumerate(boundaries):
        axes[0].axvspan(lo, hi + 1, alpha=0.15, color=f"C{i}")
        axes[0].axvline(lo, color="gray", linewidth=0.8)
    axes[0].set(xlabel="timestep t", ylabel="log SNR", title="clusters over log-SNR")
    axes[1].plot(np.arange(1, len(totals) + 1), totals, marker="o")
    axes[1].set(xlabel="k", ylabel="optimal total cost", title="cost versus k")
    axes[1].set_xticks(np.arange(1, len(totals) + 1))
    if tas is not None:
        axes[2].imshow(tas, cmap="viridis", origin="lower")
        for lo, _ in boundaries[1:]:
            axes[2].axvline(lo, color="white", linewidth=0.8)
            axes[2].axhline(lo, color="white", linewidth=0.8)
        axes[2].set(xlabel="t", ylabel="t", title="task affinity")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run() -> None:
    if FLAGS.cost == "gradient" and not FLAGS.tas:
        raise UserError("--cost=gradient needs --tas=PATH, a [T, T] task-affinity .npy file")
    abar = schedule.alphas_cumprod(schedule.beta_schedule(FLAGS.schedule, FLAGS.T))
    cost = from_config.interval_cost(FLAGS.cost, abar, FLAGS.tas)
    boundaries = np.asarray(dp.interval_clustering(cost, FLAGS.k))
    totals = dp.cost_versus_k(cost, FLAGS.k)
    log_snr = schedule.log_snr(abar)
    print(f"{FLAGS.cost} clusters, {FLAGS.schedule} schedule, T={FLAGS.T}, k={FLAGS.k}:")
    print(from_config.boundaries_table(boundaries, log_snr))
    print("optimal total cost for k' = 1..k: " + ", ".join(f"{c:.6g}" for c in totals))
    tas = from_config.load_tas(FLAGS.tas, FLAGS.T) if FLAGS.cost == "gradient" else None
    plot(FLAGS.out, boundaries, log_snr, totals, tas)
    print(f"figure: {FLAGS.out}")


def main(argv):
    del argv
    exit_on_user_error(run)


def define_flags() -> None:
    flags.DEFINE_enum("schedule", "linear", list(schedule.SCHEDULES), "Beta schedule.")
    flags.DEFINE_integer("T", 1000, "Number of timesteps.")
    flags.DEFINE_integer("k", 5, "Number of clusters.")
    flags.DEFINE_string("cost", "log_snr", f"Interval cost, one of {list(costs.COSTS)}.")
    flags.DEFINE_string("tas", "", "Task-affinity matrix [T, T] (.npy) for --cost=gradient.")
    flags.DEFINE_string("out", "clusters.png", "Where to write the figure.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
