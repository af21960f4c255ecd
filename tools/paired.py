"""Paired comparisons of a sweep's rows from its results.json (docs/*_results.json), seed by
seed at one evaluation step: mean difference, 95% CI, p, wins, and TOST at --margin.

  python -m tools.paired --results=docs/round2_diag_results.json --step=600 \
      --pairs=ant_nash:vanilla,ant_nash_lr2e3:vanilla_lr4e3 [--metric=fid] [--margin=10]

Prints one Markdown row per pair (docs/results.md's summary table is made by it).
"""

from __future__ import annotations

import json

from absl import app, flags

from diffmtl.analysis import paired
from diffmtl.errors import exit_on_user_error

FLAGS = flags.FLAGS


def table(data: dict, pairs: list[tuple[str, str]], step: int, metric: str, margin: float) -> str:
    lines = [
        f"| row | against | {metric} difference at step {step} | TOST p (margin {margin:g}) |",
        "|---|---|---|---|",
    ]
    for row, control in pairs:
        _, d = paired.seed_differences(data, row, control, step, metric)
        stats = paired.paired(d)
        equivalent = f"{paired.tost(d, margin):.2g}" if len(d) >= 2 else ""
        lines.append(
            f"| {row} | {control} | {stats.text(1 if metric == 'fid' else 5)} | {equivalent} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    with open(FLAGS.results) as f:
        data = json.load(f)
    pairs = [tuple(p.split(":")) for p in FLAGS.pairs]
    print(exit_on_user_error(table, data, pairs, FLAGS.step, FLAGS.metric, FLAGS.margin))


if __name__ == "__main__":
    flags.DEFINE_string("results", None, "A sweep's results.json.")
    flags.DEFINE_list("pairs", [], "row:control pairs.")
    flags.DEFINE_integer("step", 600, "The evaluation step.")
    flags.DEFINE_string("metric", "fid", "An evaluation field: fid, val_loss, precision, ...")
    flags.DEFINE_float("margin", 10.0, "TOST equivalence margin, in the metric's units.")
    flags.mark_flags_as_required(["results"])
    app.run(main)
