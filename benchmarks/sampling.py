"""Sampling speed of the default model, as JSON: images/s for DDIM-50 and DDPM-250.

  python -m benchmarks.sampling [--batch_size=250] [--samplers=ddim:50,ddpm:250]

One global batch per sampler after a warm-up batch (which compiles); the default UNet with
initial weights (speed does not depend on their values). Both samplers share the same jitted
reverse step, so their ratio is the ratio of model evaluations; on CPU they run as a host loop.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import app, flags

from configs import fashion_mnist
from diffmtl.evaluation import evaluator as evaluate
from diffmtl.training import experiment

FLAGS = flags.FLAGS


def measure(method: str, num_steps: int) -> dict:
    """Warm-up + one timed batch of `method` with `num_steps` respaced steps."""
    config = fashion_mnist.get_config()
    config.sampling.method, config.sampling.num_steps = method, num_steps
    if FLAGS.batch_size:
        config.sampling.batch_size = FLAGS.batch_size
    exp = experiment.build_experiment(config)
    params = experiment.initial_state(config, exp).ema_params
    sample = evaluate.experiment_sampler(config, exp)
    n = config.sampling.batch_size
    start = time.perf_counter()
    jax.block_until_ready(sample(params, 0, np.arange(n)))
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(sample(params, 1, np.arange(n)))
    seconds = time.perf_counter() - start
    return {
        "sampler": f"{method}-{num_steps}",
        "batch_size": n,
        "first_batch_s": round(first, 2),
        "batch_s": round(seconds, 2),
        "images_per_s": round(n / seconds, 2),
        "model_evaluations_per_s": round(n * num_steps / seconds, 1),
    }


def main(argv):
    del argv
    results = [measure(m, int(s)) for m, s in (p.split(":") for p in FLAGS.samplers)]
    print(json.dumps({"device": jax.devices()[0].device_kind, "results": results}, indent=2))


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, never on import)."""
    flags.DEFINE_integer("batch_size", None, "Global sampling batch (default: the config's).")
    flags.DEFINE_list("samplers", ["ddim:50", "ddpm:250"], "method:steps pairs to time.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
