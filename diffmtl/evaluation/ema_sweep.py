"""`python main.py --mode=ema_sweep`: a finished run's newest checkpoint evaluated at every EMA
length of eval.ema_sweep_sigma_rels (post-hoc EMA, reconstructed from the snapshots) and at the
classic EMA: <workdir>/ema_sweep.json, a Markdown table ema_sweep.md and ema_sweep.png (FID and
validation loss against sigma_rel, the classic EMA dashed). The validation loss is far less
noisy than FID on a few hundred samples, so it is the better guide for the length.
"""

from __future__ import annotations

import json
import os

import jax

from diffmtl.analysis import plots
from diffmtl.evaluation import evaluator as evaluation
from diffmtl.training import ema_snapshots, resume


def post_hoc_params(workdir: str, ema_params, step: int, sigma_rel: float | None):
    """The parameters of the post-hoc EMA of length sigma_rel; the classic EMA's when it is 0
    or None (eval.ema_sigma_rel's 0, the sweep's classic row)."""
    if not sigma_rel:
        return ema_params
    return ema_snapshots.params_at(workdir, ema_params, step, sigma_rel)


def table(rows: list[dict], metric_name: str) -> str:
    lines = [f"| EMA | {metric_name} | validation loss |", "|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['ema']} | {row['eval/fid']:.2f} | {row['val/loss']:.5f} |")
    return "\n".join(lines)


def plot(path: str, rows: list[dict], metric_name: str) -> None:
    fig, axes = plots.new_figure((9, 3.4), ncols=2)
    swept = [r for r in rows if r["sigma_rel"] is not None]
    classic = next(r for r in rows if r["sigma_rel"] is None)
    for ax, key, label in zip(axes, ("eval/fid", "val/loss"), (metric_name, "validation loss"),
                              strict=True):  # fmt: skip
        ax.plot([r["sigma_rel"] for r in swept], [r[key] for r in swept], "o-", label="post-hoc")
        ax.axhline(classic[key], linestyle="--", color="gray", label=classic["ema"])
        ax.set_xlabel("sigma_rel")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    plots.save_figure(fig, path)


def ema_sweep(config, workdir: str) -> str:
    """Evaluates the newest checkpoint at each post-hoc EMA length; returns the table."""
    exp, ema_params, step = resume.restore_ema_params(config, workdir)
    evaluator = evaluation.Evaluator(config, exp, workdir)
    classic = f"classic (decay cap {config.train.ema_decay:g})"
    rows = []
    for sigma_rel in (None, *config.eval.ema_sweep_sigma_rels):
        params = post_hoc_params(workdir, ema_params, step, sigma_rel)
        metrics, _ = evaluator(params, config.eval.num_samples)
        label = classic if sigma_rel is None else f"sigma_rel {sigma_rel:g}"
        rows.append({"ema": label, "sigma_rel": sigma_rel, **metrics})
    name = evaluator.headline(rows[0]).split()[0]  # FID_FMNIST or FID
    text = table(rows, name)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "ema_sweep.json"), "w") as f:
            json.dump({"step": step, "rows": rows}, f, indent=1)
        with open(os.path.join(workdir, "ema_sweep.md"), "w") as f:
            f.write(f"Step {step}, {config.eval.num_samples} samples per FID.\n\n{text}\n")
        plot(os.path.join(workdir, "ema_sweep.png"), rows, name)
    return f"step {step}:\n{text}"
