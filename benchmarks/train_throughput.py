"""Training throughput of the default config for several micro-batch counts, as JSON.

  python -m benchmarks.train_throughput [--num_microbatches=1,5] [--steps=10] [--batch_size=75]
      [--with_task_grads]   # the step that computes per-cluster gradients [k, ...] instead

Each M runs the real jitted step on Fashion-MNIST batches in one process, so the figures are
comparable as ratios (this machine is shared and noisy; compare within one run).
"""

from __future__ import annotations

import json
import time

import jax
from absl import app, flags

from configs import fashion_mnist
from diffmtl.data import pipeline as input_pipeline
from diffmtl.training import experiment

FLAGS = flags.FLAGS


def measure(num_microbatches: int) -> dict:
    """Compile time, steps/s and images/s of the default config with M micro-batches."""
    config = fashion_mnist.get_config()
    config.train.num_microbatches = num_microbatches
    if FLAGS.batch_size:
        config.train.batch_size = FLAGS.batch_size
    if FLAGS.microbatch_loop:
        config.train.microbatch_loop = FLAGS.microbatch_loop
    exp = experiment.build_experiment(config)
    state = experiment.initial_state(config, exp)
    data = input_pipeline.GlobalBatchIterator(exp.source, config.seed, exp.layout, exp.mesh)
    step = exp.train_step[FLAGS.with_task_grads]
    start = time.perf_counter()
    state, metrics = step(state, next(data))
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    batches = [next(data) for _ in range(FLAGS.steps)]
    start = time.perf_counter()
    for batch in batches:
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / FLAGS.steps
    return {
        "num_microbatches": num_microbatches,
        "batch_size": config.train.batch_size,
        "microbatch_loop": config.train.microbatch_loop,
        "with_task_grads": FLAGS.with_task_grads,
        "first_step_s": round(compile_s, 2),
        "step_s": round(seconds, 4),
        "steps_per_s": round(1 / seconds, 3),
        "images_per_s": round(config.train.batch_size / seconds, 1),
    }


def main(argv):
    del argv
    results = [measure(int(m)) for m in FLAGS.num_microbatches]
    base = results[0]["step_s"]
    for r in results:
        r["time_vs_first"] = round(r["step_s"] / base, 3)
    print(json.dumps({"devices": jax.device_count(), "results": results}, indent=2))


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, never on import)."""
    flags.DEFINE_list("num_microbatches", ["1", "5"], "Micro-batch counts M to measure.")
    flags.DEFINE_integer("steps", 10, "Timed steps per M (after one compile step).")
    flags.DEFINE_integer("batch_size", None, "Global batch size (default: the config's).")
    flags.DEFINE_string("microbatch_loop", None, "'unroll' or 'scan' (default: the config's).")
    flags.DEFINE_bool("with_task_grads", False, "Time the per-cluster-gradient step instead.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
