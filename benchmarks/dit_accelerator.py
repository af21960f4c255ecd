"""DiT training-step time, memory and MFU on one accelerator (the ImageNet-256 config's step on
random latents of the paper's shape), float32 and bfloat16.

  python -m benchmarks.dit_accelerator                       # DiT-S/2 (batch 50), DiT-XL/2 (30)
  python -m benchmarks.dit_accelerator --variants=DiT-Ti/4 --batch_sizes=10 --steps=2  # CPU smoke

Prints JSON per (variant, dtype): step seconds (median of --steps after one compile run),
per-device memory (XLA's estimate, and the device's peak when it reports one), FLOPs per step
(XLA's count of the compiled step) and MFU = FLOPs / step time / peak FLOP/s of the chip
(--peak_tflops, or a table by device kind: bfloat16 dense tensor-core peaks; float32 runs
report MFU against the same bfloat16 peak, so the two dtypes compare on one scale).
Batch sizes: DiT-S/2 50 (the ANT release's single-GPU DiT-S runs), DiT-XL/2 30 (DiT's 256
over 8 GPUs is 32 per device; 30 = 5 clusters x 6). Designed to fit in about ten minutes of
one GPU: two variants x two dtypes, each one compile and a few steps.
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import dit_efficiency

FLAGS = flags.FLAGS
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "TPU v5": 197.0}


def peak_tflops() -> float | None:
    if FLAGS.peak_tflops:
        return FLAGS.peak_tflops
    kind = jax.devices()[0].device_kind
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in kind), None)


def measure(variant: str, dtype: str, batch_size: int) -> dict:
    exp, state, batch = dit_efficiency.latent_experiment(
        variant, batch_size, dtype=dtype, attention_implementation=FLAGS.attention
    )
    step = exp.train_step[False]
    compiled = step.lower(state, batch).compile()
    analysis = compiled.cost_analysis()
    flops = (analysis[0] if isinstance(analysis, list | tuple) else analysis)["flops"]
    memory = compiled.memory_analysis()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    stats = jax.devices()[0].memory_stats() or {}
    peak = peak_tflops()
    return {
        "variant": variant,
        "dtype": dtype,
        "batch_size": batch_size,
        "step_seconds": seconds,
        "images_per_second": batch_size / seconds,
        "tflops_per_step": flops / 1e12,
        "achieved_tflops_per_s": flops / seconds / 1e12,
        "mfu": flops / seconds / (peak * 1e12) if peak else None,
        "xla_memory_gib": (memory.temp_size_in_bytes + memory.argument_size_in_bytes) / 2**30,
        "device_peak_gib": stats.get("peak_bytes_in_use", 0) / 2**30 or None,
        "loss": float(np.mean(jax.device_get(metrics["task_losses"]))),
    }


def main(argv):
    del argv
    rows = []
    for variant, batch_size in zip(FLAGS.variants, FLAGS.batch_sizes, strict=True):
        for dtype in FLAGS.dtypes:
            rows.append(measure(variant, dtype, int(batch_size)))
            print(json.dumps(rows[-1]), flush=True)
    device = jax.devices()[0].device_kind
    print(json.dumps({"device": device, "peak_bf16_tflops": peak_tflops(), "rows": rows}, indent=2))


if __name__ == "__main__":
    flags.DEFINE_list("variants", ["DiT-S/2", "DiT-XL/2"], "DiT variants.")
    flags.DEFINE_list("batch_sizes", ["50", "30"], "Batch per variant (a multiple of k = 5).")
    flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "model.dtype values.")
    flags.DEFINE_integer("steps", 5, "Timed steps after one compile run.")
    flags.DEFINE_float("peak_tflops", 0.0, "The chip's peak TFLOP/s (0: from the device kind).")
    flags.DEFINE_string("attention", "xla", "model.attention_implementation: 'xla' or 'cudnn'.")
    app.run(main)
