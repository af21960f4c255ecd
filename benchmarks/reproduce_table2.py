"""The paper's Table 2 at CPU scale: a class-conditional latent DiT on Fashion-MNIST with
classifier-free guidance (configs/fashion_mnist_latent_dit.py), guided and unguided FID.

  python -m benchmarks.reproduce_table2 [--workdir=workdirs/table2] [--seeds=0,1,2]
      [--num_train_steps=600] [--num_evals=3] [--num_samples=480] [--stop_after_runs=0]
      [--report_only] [--rows=vanilla,ant_nash]

Rows (PAPER.md Table 2; the DiT-L/2 rows vanilla, Min-SNR, ANT-UW, and our ANT-Nash-MTL): vanilla
(k = 1), Min-SNR-5 (k = 1), ANT-UW and ANT-Nash-MTL (k = 5 log-SNR clusters). Every run trains
the config as it is (DiT-Ti/2 on the 8x8x4 latents, label dropout 0.1, 600 steps, lr 1e-3) and
is evaluated with its guidance (scale 2.0) at --num_evals checkpoints, into --workdir; once every
run is trained, the same checkpoints are evaluated unguided (scale 1: the conditional model
alone) into <workdir>/unguided. Both tables are printed. Resumable like reproduce_table1.
--rows may also name vanilla_lr2e3, ant_nash_lr2e3, vanilla_lr4e3 and ant_nash_lr4e3: both rows
at the learning rates 2e-3 and 4e-3 (the config's is 1e-3), each Nash row paired with the
vanilla row of its rate: the DiT's learning-rate curve (round 2's `table2_lr` stage).
"""

from __future__ import annotations

import os

from absl import app, flags

from benchmarks import reproduce_table1 as table1
from configs import fashion_mnist_latent_dit
from diffmtl.analysis import sweep
from diffmtl.errors import exit_on_user_error

FLAGS = flags.FLAGS
UNGUIDED = (("sampling.guidance_scale", 1.0),)
LR_CURVE = (2e-3, 4e-3)  # The learning-rate rows' rates; the config's 1e-3 is the table's.


def table2_rows() -> list[sweep.Row]:
    """Table 1's rows of these names; vanilla first (the baseline of the paired differences)."""
    return table1.named(("vanilla", "min_snr", "ant_uw", "ant_nash"))


def catalogue() -> list[sweep.Row]:
    """The table's rows, then the learning-rate curve's (what --rows may name)."""
    return table2_rows() + table1.learning_rate_rows(LR_CURVE)


def reproduce(workdir: str) -> str:
    rows = table1.select_rows(catalogue(), table2_rows())
    base = fashion_mnist_latent_dit.get_config()
    settings = table1.settings()
    guided = table1.run_table(base, rows, workdir, settings)
    results = sweep.Results(workdir, settings)
    runs = [sweep.run_name(row, seed) for row in rows for seed in settings.seeds]
    if not all(results.finished(run) for run in runs):
        return f"guided (scale {base.sampling.guidance_scale}):\n{guided}"
    unguided_settings = table1.settings(checkpoints_from=workdir, eval_overrides=UNGUIDED)
    unguided = table1.run_table(base, rows, os.path.join(workdir, "unguided"), unguided_settings)
    return f"guided (scale {base.sampling.guidance_scale}):\n{guided}\n\nunguided:\n{unguided}"


def main(argv):
    del argv
    table1.use_compile_cache()
    print(exit_on_user_error(reproduce, FLAGS.workdir))


if __name__ == "__main__":
    table1.define_flags(workdir="workdirs/table2", num_samples=480)
    app.run(main)
