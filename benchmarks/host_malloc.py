"""glibc's malloc against XLA:CPU's buffers: the training step with and without transparent huge
pages for malloc (GLIBC_TUNABLES=glibc.malloc.hugetlb=1), as an A/B of child processes.

  python -m benchmarks.host_malloc [--targets=fashion_mnist_unet,fashion_mnist_dit,DiT-S/2]
      [--steps=5] [--rounds=2]

XLA:CPU allocates a step's activations and temporaries at every call and frees them at its
end; glibc serves buffers above its mmap threshold (at most 32 MiB) with a fresh mmap and
returns them with munmap, so each step touches gigabytes of new 4 KiB pages and takes a page
fault for each (about a million per DiT-S/2 step at batch 20). Where faults are expensive (a
virtual machine) that is a large part of the step. The tunable makes glibc ask for 2 MiB pages
(madvise(MADV_HUGEPAGE)): about 160 times fewer faults per DiT-S/2 step, measured here. It
is read when the process starts, so each setting runs in its own process (the Makefile
exports it for `make demo`, `make test` and `make bench`; see README, Efficiency).

Prints JSON: for each target and setting, the rounds' median step times, minor page faults per
step, peak resident memory and the step's GFLOP/s against its own float32 matmul (as
benchmarks/dit_efficiency.py); and the speed-up, default / tuned step time (rounds pooled).
Settings alternate within each round, so drift on a shared machine hits both alike.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys

from absl import app, flags

FLAGS = flags.FLAGS
SETTINGS = {"glibc_default": None, "hugetlb": "glibc.malloc.hugetlb=1"}


def measure(target: str, steps: int) -> dict:
    """One process's figures for `target`: a pixel config's name or a latent DiT variant."""
    from benchmarks import dit_efficiency
    from configs import fashion_mnist, fashion_mnist_dit
    from diffmtl.models import dit

    pixel = {"fashion_mnist_unet": fashion_mnist, "fashion_mnist_dit": fashion_mnist_dit}
    if target in pixel:
        config = pixel[target].get_config()
        config.train.num_microbatches = 1
        figures = dit_efficiency.step_gflops(config, steps)
        _, d, _, p = dit.parse_variant(fashion_mnist_dit.get_config().model.variant)
        tokens = config.train.batch_size * (28 // p) ** 2
    else:
        batch_size = 20
        figures = dit_efficiency.latent_step_gflops(target, batch_size, steps)
        _, d, _, p = dit.parse_variant(target)
        tokens = batch_size * (32 // p) ** 2
    matmul = dit_efficiency.matmul_gflops(tokens, d, dit_efficiency.MATMUL_REPEATS)
    return {
        **figures,
        "matmul_gflops_per_s": matmul,
        "ratio_to_matmul": figures["gflops_per_s"] / matmul,
        "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def run_child(target: str, tunables: str | None, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    command = [sys.executable, "-m", "benchmarks.host_malloc", f"--child={target}"]
    out = subprocess.run(
        [*command, f"--steps={steps}"], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv):
    del argv
    if FLAGS.child:
        print(json.dumps(measure(FLAGS.child, FLAGS.steps)))
        return
    result = {}
    for target in FLAGS.targets:
        runs = {name: [] for name in SETTINGS}
        for _ in range(FLAGS.rounds):
            for name, tunables in SETTINGS.items():
                runs[name].append(run_child(target, tunables, FLAGS.steps))
        seconds = {name: [r["step_seconds"] for r in rs] for name, rs in runs.items()}
        result[target] = {
            "runs": runs,
            "speedup_hugetlb": statistics.median(seconds["glibc_default"])
            / statistics.median(seconds["hugetlb"]),
        }
        print(json.dumps({target: result[target]["speedup_hugetlb"]}), file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    flags.DEFINE_list(
        "targets",
        ["fashion_mnist_unet", "fashion_mnist_dit", "DiT-S/2"],
        "fashion_mnist_unet, fashion_mnist_dit or a DiT variant (configs/imagenet256_dit.py at "
        "32x32x4, batch 20).",
    )
    flags.DEFINE_integer("steps", 5, "Timed steps per process (after one compile run).")
    flags.DEFINE_integer("rounds", 2, "Processes per setting, alternating.")
    flags.DEFINE_string("child", None, "Internal: measure this target in this process.")
    app.run(main)
