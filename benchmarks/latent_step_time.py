"""Latent vs pixel training step on this machine: the Fashion-MNIST latent DiT against the UNet
default at the same batch, measured in one run (ratios; the machine is shared).

  python -m benchmarks.latent_step_time [--steps=5]

Prints JSON: each config's median step time (one device, the configs' own batch and
micro-batches), its XLA FLOP count, and pixel_unet / latent_dit, the speed-up the latent config
buys (goal: >= 2). The latent cache is built first if missing (not timed).
"""

from __future__ import annotations

import json

from absl import app, flags

from benchmarks.dit_efficiency import step_gflops
from configs import fashion_mnist, fashion_mnist_dit, fashion_mnist_latent_dit

FLAGS = flags.FLAGS


def main(argv):
    del argv
    result = {}
    for name, module in (
        ("pixel_unet", fashion_mnist),
        ("pixel_dit", fashion_mnist_dit),
        ("latent_dit", fashion_mnist_latent_dit),
    ):
        result[name] = step_gflops(module.get_config(), FLAGS.steps)
    unet, latent = result["pixel_unet"]["step_seconds"], result["latent_dit"]["step_seconds"]
    result["speedup_latent_dit_over_pixel_unet"] = unet / latent
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    flags.DEFINE_integer("steps", 5, "Timed repetitions (after one compile run).")
    app.run(main)
