"""DiT efficiency on this machine: training-step GFLOP/s against a plain matmul, and the paper's
forward GFLOPs.

  python -m benchmarks.dit_efficiency [--steps=5] [--variants=DiT-S/2,DiT-XL/2] [--nopixel_steps]

Prints JSON with, measured in one run (the machine is shared: ratios, not absolute times):
  - matmul_gflops_per_s: a float32 [M, D] x [D, 4D] matmul of the DiT step's own token count M
    and width D (the shape of its MLP), the best of 50;
  - for the Fashion-MNIST DiT and the default UNet (unless --nopixel_steps): the training
    step's GFLOP/s (XLA's FLOP count of the compiled step / its median time), its ratio to
    the matmul's and the minor page faults per step (see benchmarks/host_malloc.py);
  - for each of --latent_variants and each M of --latent_microbatches: the same for
    configs/imagenet256_dit.py's step at 32x32x4 (random latent-shaped arrays,
    --latent_batch_size, M micro-batches in its `scan`), against a matmul of its own MLP shape.
    A scanned step's compiled cost counts the loop body once, so its FLOPs are the count of
    the same step unrolled (lowered, not compiled): the same arithmetic as M = 1, give or take
    the accumulation adds. On this CPU, M > 1 is faster at the same batch: the step's working
    set shrinks (README, Efficiency);
  - for each of --variants: forward GFLOPs per image at 32x32x4 (XLA's count of the lowered
    forward, in multiply-adds, i.e. FLOPs / 2, the DiT paper's convention: fvcore counts one
    multiply-add as one flop), against the paper's (XL/2: 118.6).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from configs import fashion_mnist, fashion_mnist_dit, imagenet256_dit
from diffmtl import models
from diffmtl.data import pipeline
from diffmtl.models import dit
from diffmtl.training import dry_run, experiment

FLAGS = flags.FLAGS
PAPER_GFLOPS = {"DiT-XL/2": 118.6}  # the DiT paper's XL/2 figure


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


MATMUL_REPEATS = 50  # The matmul takes milliseconds: its best of 50 is a stable reference.


def step_gflops(config, steps: int) -> dict:
    """GFLOP/s of the config's weighted-loss training step on one device."""
    exp = experiment.build_experiment(config, jax.devices()[:1])
    data = pipeline.GlobalBatchIterator(exp.source, config.seed, exp.layout, exp.mesh)
    return _time_step(exp, experiment.initial_state(config, exp), next(data), steps)


def latent_experiment(variant: str, batch_size: int, train=None, **model) -> tuple:
    """(experiment, initial state, batch) of configs/imagenet256_dit.py with `variant` (and
    config.train fields `train`, config.model fields `model`) on one device, the batch random
    arrays of its 32x32x4 latent batch (posterior mean and std, labels)."""
    config = imagenet256_dit.get_config()
    config.model.variant = variant
    config.model.update(model)
    config.train.update(train or {})
    config.train.batch_size = batch_size
    exp = experiment.build_experiment(config, jax.devices()[:1], with_data=False)
    return exp, experiment.initial_state(config, exp), dry_run.random_inputs(config, exp)


def latent_step_gflops(variant: str, batch_size: int, steps: int, microbatches: int = 1) -> dict:
    """GFLOP/s of configs/imagenet256_dit.py's step with `variant` and `microbatches` (scanned)
    on one device (random latent-shaped arrays)."""
    train = {"num_microbatches": microbatches}
    flops = None
    if microbatches > 1:
        exp, state, batch = latent_experiment(
            variant, batch_size, {**train, "microbatch_loop": "unroll"}
        )
        flops = exp.train_step[False].lower(state, batch).cost_analysis()["flops"]
        del exp, state, batch
    return _time_step(*latent_experiment(variant, batch_size, train), steps, flops)


def _time_step(exp, state, batch, steps: int, flops: float | None = None) -> dict:
    """Median seconds of `steps` calls of the experiment's weighted-loss step after one
    untimed call, and GFLOP/s from `flops` (default: XLA's count of the compiled step)."""
    # Each measurement starts with the previous one's executables and buffers freed.
    gc.collect()
    jax.clear_caches()
    step = exp.train_step[False]
    compiled = step.lower(state, batch).compile()
    if flops is None:
        analysis = compiled.cost_analysis()
        flops = (analysis[0] if isinstance(analysis, list | tuple) else analysis)["flops"]
    state, _ = step(state, batch)
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    seconds = statistics.median(times)
    return {
        "step_seconds": seconds,
        "minor_page_faults_per_step": faults / steps,
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
    matmul = matmul_gflops(tokens, d, MATMUL_REPEATS)
    result = {
        "device": jax.devices()[0].device_kind,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "matmul_gflops_per_s": matmul,
    }
    pixel_configs = (
        ("fashion_mnist_dit", dit_config),
        ("fashion_mnist_unet", fashion_mnist.get_config()),
    )
    for name, config in pixel_configs if FLAGS.pixel_steps else ():
        config.train.num_microbatches = 1
        figures = step_gflops(config, FLAGS.steps)
        result[name] = {**figures, "ratio_to_matmul": figures["gflops_per_s"] / matmul}
    for variant in FLAGS.latent_variants:
        _, d, _, p = dit.parse_variant(variant)
        own = matmul_gflops(FLAGS.latent_batch_size * (32 // p) ** 2, d, MATMUL_REPEATS)
        for m in map(int, FLAGS.latent_microbatches):
            figures = latent_step_gflops(variant, FLAGS.latent_batch_size, FLAGS.steps, m)
            result[f"latent_{variant}" + (f"_M{m}" if m > 1 else "")] = {
                **figures,
                "batch_size": FLAGS.latent_batch_size,
                "num_microbatches": m,
                "matmul_gflops_per_s": own,
                "ratio_to_matmul": figures["gflops_per_s"] / own,
            }
    result["forward_gmacs_per_image"] = {
        v: {"ours": forward_gmacs(v), "paper": PAPER_GFLOPS.get(v)} for v in FLAGS.variants
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    flags.DEFINE_integer("steps", 5, "Timed repetitions (after one compile run).")
    flags.DEFINE_list("variants", ["DiT-S/2", "DiT-XL/2"], "Variants whose forward is counted.")
    flags.DEFINE_list(
        "latent_variants", ["DiT-S/2", "DiT-B/2"], "Variants whose 32x32x4 step is timed."
    )
    flags.DEFINE_integer("latent_batch_size", 20, "Their batch (k = 5 divides it).")
    flags.DEFINE_list(
        "latent_microbatches", ["1", "4"], "Micro-batch counts M of each latent step timed."
    )
    flags.DEFINE_bool("pixel_steps", True, "Time the Fashion-MNIST DiT and UNet steps too.")
    app.run(main)
