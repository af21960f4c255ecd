"""The cost of tracking post-hoc EMA profiles: the default config's training step with
train.ema_profiles=() and with the default two, compiled once each and timed alternately in one
process (rounds x steps), so the ratio is measured under the same machine load.

  python -m benchmarks.post_hoc_ema [--rounds=3] [--steps=5] [--variant=ant]

Prints JSON: median step seconds per setting, their ratio (goal: <= 1.05), and the size of one
snapshot (the profiles) against the parameters'. Figures: docs/performance.md.
"""

from __future__ import annotations

import json
import math
import statistics
import time

import jax
from absl import app, flags

from configs import fashion_mnist
from diffmtl.data import pipeline as input_pipeline
from diffmtl.training import experiment

FLAGS = flags.FLAGS


def prepared(profiles: tuple):
    config = fashion_mnist.get_config(FLAGS.variant)
    config.train.ema_profiles = profiles
    exp = experiment.build_experiment(config)
    step = exp.train_step[exp.method.needs_task_grads(1, config.mtl)]
    state = experiment.initial_state(config, exp)
    data = input_pipeline.GlobalBatchIterator(exp.source, config.seed, exp.layout, exp.mesh)
    state, metrics = step(state, next(data))  # compile
    jax.block_until_ready(metrics)
    return {"step": step, "state": state, "batches": [next(data) for _ in range(FLAGS.steps)]}


def timed(run: dict) -> float:
    state = run["state"]
    start = time.perf_counter()
    for batch in run["batches"]:
        state, metrics = run["step"](state, batch)
    jax.block_until_ready(metrics)
    run["state"] = state
    return (time.perf_counter() - start) / len(run["batches"])


def main(argv):
    del argv
    default = tuple(fashion_mnist.get_config().train.ema_profiles)
    runs = {"none": prepared(()), "profiles": prepared(default)}
    times = {name: [] for name in runs}
    for _ in range(FLAGS.rounds):
        for name, run in runs.items():
            times[name].append(timed(run))
    median = {name: statistics.median(t) for name, t in times.items()}
    params = sum(math.prod(p.shape) for p in jax.tree.leaves(runs["none"]["state"].params))
    print(json.dumps({
        "variant": FLAGS.variant,
        "ema_profiles": default,
        "step_s": {name: round(m, 4) for name, m in median.items()},
        "all_step_s": {name: [round(x, 4) for x in t] for name, t in times.items()},
        "ratio": round(median["profiles"] / median["none"], 4),
        "parameters": params,
        "snapshot_mb": round(len(default) * params * 4 / 1e6, 2),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    flags.DEFINE_integer("rounds", 3, "Alternating rounds of timed steps per setting.")
    flags.DEFINE_integer("steps", 5, "Timed steps per round.")
    flags.DEFINE_string("variant", "ant", "configs/fashion_mnist.py's variant.")
    app.run(main)
