"""DiT efficiency on this machine: training-step GFLOP/s against a plain matmul, and the paper's
forward GFLOPs.

  python -m benchmarks.dit_efficiency [--steps=5] [--variants=DiT-S/2,DiT-XL/2]

Prints JSON with, measured in one run (the machine is shared: ratios, not absolute times):
  - matmul_gflops_per_s: a float32 [M, D] x [D, 4D] matmul of the DiT step's own token count M
    and width D (the shape of its MLP), the best of --steps;
  - for the Fashion-MNIST DiT and the default UNet: the training step's GFLOP/s (XLA's FLOP
    count of the compiled step / its median time) and its ratio to the matmul's;
  - for each of --variants: forward GFLOPs per image at 32x32x4 (XLA's count of the lowered
    forward, in multiply-adds, i.e. FLOPs / 2, the DiT paper's convention: fvcore counts one
    multiply-add as one flop), against the paper's (XL/2: 118.6).
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from configs import fashion_mnist, fashion_mnist_dit, imagenet256_dit
from diffmtl import models
from diffmtl.data import pipeline
from diffmtl.models import dit
from diffmtl.training import experiment

FLAGS = flags.FLAGS
PAPER_GFLOPS = {"DiT-XL/2": 118.6}  # PAPER.md section 6


def _timed(fn, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def matmul_gflops(m: int, d: int, steps: int) -> float:
    a = jnp.ones((m, d), jnp.float32)
    b = jnp.ones((d, 4 * d), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    return 2 * m * d * 4 * d / min(_timed(lambda: matmul(a, b), steps)) / 1e9


def step_gflops(config, steps: int) -> dict:
    """GFLOP/s of the config's weighted-loss training step on one device."""
    devices = jax.devices()[:1]
    exp = experiment.build_experiment(config, devices)
    state = experiment.initial_state(config, exp)
    data = pipeline.GlobalBatchIterator(exp.source, config.seed, exp.layout, exp.mesh)
    batch = next(data)
    step = exp.train_step[False]
    compiled = step.lower(state, batch).compile()
    analysis = compiled.cost_analysis()
    flops = (analysis[0] if isinstance(analysis, list | tuple) else analysis)["flops"]
    state, _ = step(state, batch)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "step_seconds": seconds,
        "gflops_per_step": flops / 1e9,
        "gflops_per_s": flops / seconds / 1e9,
    }


def forward_gmacs(variant: str) -> float:
    """Forward multiply-adds per image (G) of a DiT variant at 32x32x4 with 1000 classes."""
    config = imagenet256_dit.get_config()
    config.model.variant = variant
    model = models.make_model(config, (32, 32, 4))
    x, t, y = jnp.zeros((1, 32, 32, 4)), jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32)
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, t, y, train=False))
    lowered = jax.jit(lambda p: models.denoise(model, p["params"], x, t, y)).lower(params)
    return lowered.cost_analysis()["flops"] / 2 / 1e9


def main(argv):
    del argv
    dit_config = fashion_mnist_dit.get_config()
    _, d, _, p = dit.parse_variant(dit_config.model.variant)
    tokens = dit_config.train.batch_size * (28 // p) ** 2
    matmul = matmul_gflops(tokens, d, FLAGS.steps)
    result = {"device": jax.devices()[0].device_kind, "matmul_gflops_per_s": matmul}
    for name, config in (
        ("fashion_mnist_dit", dit_config),
        ("fashion_mnist_unet", fashion_mnist.get_config()),
    ):
        config.train.num_microbatches = 1
        figures = step_gflops(config, FLAGS.steps)
        result[name] = {**figures, "ratio_to_matmul": figures["gflops_per_s"] / matmul}
    result["forward_gmacs_per_image"] = {
        v: {"ours": forward_gmacs(v), "paper": PAPER_GFLOPS.get(v)} for v in FLAGS.variants
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    flags.DEFINE_integer("steps", 5, "Timed repetitions (after one compile run).")
    flags.DEFINE_list("variants", ["DiT-S/2", "DiT-XL/2"], "Variants whose forward is counted.")
    app.run(main)
