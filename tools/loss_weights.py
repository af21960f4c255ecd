"""The MTL weights of finished runs, read back from their TensorBoard events: how far apart the
clusters' weights drift (docs/results.md, round 2: UW's weights running away).

  python -m tools.loss_weights --runs=RUN_DIR,RUN_DIR,... [--steps=100,300,600]

Prints JSON per run: at each logged step nearest to --steps, the weights w_0..w_{k-1}
('train/loss_weights/cluster_<i>', the mean over the log interval), the ratio of the largest
to the smallest and, where the run logged it, the parameters' step ('train/update_norm': the
norm of AdamW's update, the learning rate included).
"""

from __future__ import annotations

import json

import numpy as np
from absl import app, flags

from diffmtl.training.events import read_scalars

FLAGS = flags.FLAGS
PREFIX = "train/loss_weights/cluster_"
UPDATE_NORM = "train/update_norm"


def weights_at(workdir: str, steps: list[int]) -> dict[str, dict]:
    """{step: {'weights': [k], 'max_over_min': r}} at the logged steps nearest to `steps`."""
    scalars = read_scalars(workdir, "train/")
    update_norm = scalars.pop(UPDATE_NORM, {})
    scalars = {tag: values for tag, values in scalars.items() if tag.startswith(PREFIX)}
    if not scalars:
        raise ValueError(f"{workdir} has no {PREFIX}* scalars in its TensorBoard events")
    tags = sorted(scalars, key=lambda tag: int(tag.removeprefix(PREFIX)))
    logged = sorted(scalars[tags[0]])
    out = {}
    for step in steps:
        nearest = min(logged, key=lambda s: abs(s - step))
        w = np.array([scalars[tag][nearest] for tag in tags])
        out[str(nearest)] = {
            "weights": w.round(4).tolist(),
            "max_over_min": float(w.max() / w.min()),
        }
        if nearest in update_norm:
            out[str(nearest)]["update_norm"] = update_norm[nearest]
    return out


def main(argv):
    del argv
    steps = [int(s) for s in FLAGS.steps]
    print(json.dumps({run: weights_at(run, steps) for run in FLAGS.runs}, indent=1))


if __name__ == "__main__":
    flags.DEFINE_list("runs", [], "Run directories (workdirs with TensorBoard events).")
    flags.DEFINE_list("steps", ["100", "300", "600"], "Steps to report (the nearest logged).")
    app.run(main)
