"""Prints and plots a clustering of the T timesteps, with the optimal cost for every k' <= k.

python -m diffmtl.clustering --schedule=cosine --T=1000 --k=5 --cost=log_snr
python -m diffmtl.clustering --cost=gradient --tas=workdir/tas.npy --out=clusters.png
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from diffmtl.analysis import plots
from diffmtl.clustering import costs, dp, from_config
from diffmtl.diffusion import schedule
from diffmtl.errors import UserError, exit_on_user_error

FLAGS = flags.FLAGS


def plot(path: str, boundaries, log_snr, totals, tas=None) -> None:
    """Boundaries over the log-SNR curve (and the TAS heatmap), and the cost-versus-k curve."""
    panels = 3 if tas is not None else 2
    fig, axes = plots.new_figure((5 * panels, 4), 1, panels)
    plots.draw_clusters(axes[0], boundaries, log_snr)
    plots.draw_cost_versus_k(axes[1], totals)
    if tas is not None:
        axes[2].imshow(tas, cmap="viridis", origin="lower")
        for lo, _ in boundaries[1:]:
            axes[2].axvline(lo, color="white", linewidth=0.8)
            axes[2].axhline(lo, color="white", linewidth=0.8)
        axes[2].set(xlabel="t", ylabel="t", title="task affinity")
    plots.save_figure(fig, path, dpi=100)


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
