"""The paper's Table 2 at CPU scale: a class-conditional latent DiT on Fashion-MNIST with
classifier-free guidance (configs/fashion_mnist_latent_dit.py), guided and unguided FID.

  python -m benchmarks.reproduce_table2 [--workdir=workdirs/table2] [--seeds=0,1,2]
      [--num_train_steps=600] [--num_evals=3] [--num_samples=480] [--stop_after_runs=0]
      [--report_only] [--rows=vanilla,ant_nash] [--worker=0/1]

Rows (the paper's Table 2, docs/method.md; the DiT-L/2 rows vanilla, Min-SNR, ANT-UW, and our
ANT-Nash-MTL): vanilla
(k = 1), Min-SNR-5 (k = 1), ANT-UW and ANT-Nash-MTL (k = 5 log-SNR clusters). Every run trains
the config as it is (DiT-Ti/2 on the 8x8x4 latents, label dropout 0.1, 600 steps, lr 1e-3) and
is evaluated with its guidance (scale 2.0) at --num_evals checkpoints, into --workdir, and as
soon as it is trained the same checkpoints are evaluated unguided (scale 1: the conditional model
alone) into <workdir>/unguided. Both tables are printed. Resumable like reproduce_table1; a run
whose guided entry is recorded but whose unguided one is not and whose checkpoints are gone (a
lost machine: round2 restores results.json, not runs/) is trained again. --worker=i/n: every
n-th run from the i-th, trained and evaluated both ways by this process (n processes share the
workdir as in reproduce_table1; the first to start builds the latent cache, the others wait).
--rows may also name vanilla_lr2e3, ant_nash_lr2e3, vanilla_lr4e3 and ant_nash_lr4e3: both rows
at the learning rates 2e-3 and 4e-3 (the config's is 1e-3), each Nash row paired with the
vanilla row of its rate: the DiT's learning-rate curve (round 2's `table2_lr` stage).
"""

from __future__ import annotations

import itertools
import os

from absl import app, flags

from benchmarks import reproduce_table1 as table1
from configs import fashion_mnist_latent_dit
from diffmtl.analysis import sweep
from diffmtl.autoencoder import encode_latents
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


def forget_lost_runs(
    guided: sweep.Results, unguided: sweep.Results, rows, workdir: str, worker=(0, 1)
) -> list:
    """Drops (and saves) the guided entries of the worker's runs whose unguided evaluation is
    missing and whose checkpoints are gone, so they are trained again; returns their names."""
    settings = guided.data["settings"]
    lost = [
        sweep.run_name(row, seed)
        for _, seed, row in sweep.worker_plan(rows, settings["seeds"], worker)
        if guided.finished(sweep.run_name(row, seed))
        and not unguided.finished(sweep.run_name(row, seed))
        and sweep.missing_checkpoints(sweep.run_dir(workdir, row, seed), settings["eval_steps"])
    ]
    for name in lost:
        guided.forget(name)
    if lost:
        guided.save()
    return lost


def train_and_evaluate(
    base, rows, settings, unguided_settings, workdir: str, stop_after_runs: int = 0, worker=(0, 1)
) -> None:
    """Trains the runs one at a time, each evaluated guided and then at once unguided, so a lost
    machine loses at most the run in progress; stops after `stop_after_runs` runs (0: all).
    worker = (i, n): only every n-th run of the plan from the i-th (sweep.run_sweep)."""
    unguided_dir = os.path.join(workdir, "unguided")
    lost = forget_lost_runs(
        sweep.Results(workdir, settings), sweep.Results(unguided_dir, unguided_settings),
        rows, workdir, worker,
    )  # fmt: skip
    if lost:
        print(f"table2: training {lost} again: their checkpoints are gone, unguided not evaluated")
    mine = [
        sweep.run_name(row, seed)
        for _, seed, row in sweep.worker_plan(rows, settings.seeds, worker)
    ]
    for done in itertools.count(1):
        guided = sweep.run_sweep(base, rows, settings, workdir, stop_after_runs=1, worker=worker)
        sweep.run_sweep(
            base, rows, unguided_settings, unguided_dir, skip_untrained=True, worker=worker
        )
        if all(guided.finished(name) for name in mine) or done == stop_after_runs:
            return


def build_latent_cache(base, workdir: str) -> None:
    """Encodes what the config's latent cache lacks under the workdir's lock: workers share the
    cache, so the first builds it and the others wait (then find it complete)."""
    os.makedirs(workdir, exist_ok=True)
    with sweep.workdir_lock(workdir):
        encode_latents.encode(base, [])


def reproduce(workdir: str) -> str:
    rows = table1.select_rows(catalogue(), table2_rows())
    base = fashion_mnist_latent_dit.get_config()
    settings = table1.settings()
    unguided_settings = table1.settings(checkpoints_from=workdir, eval_overrides=UNGUIDED)
    if not FLAGS.report_only:
        worker = table1.parse_worker(FLAGS.worker)
        if worker[1] > 1:
            build_latent_cache(base, workdir)
        train_and_evaluate(
            base, rows, settings, unguided_settings, workdir, FLAGS.stop_after_runs, worker
        )
    guided = table1.report_table(rows, workdir, settings)
    unguided = table1.report_table(rows, os.path.join(workdir, "unguided"), unguided_settings)
    return f"guided (scale {base.sampling.guidance_scale}):\n{guided}\n\nunguided:\n{unguided}"


def main(argv):
    del argv
    table1.use_compile_cache()
    print(exit_on_user_error(reproduce, FLAGS.workdir))


if __name__ == "__main__":
    table1.define_flags(workdir="workdirs/table2", num_samples=480)
    app.run(main)
