"""The Table 1 reproduction at accelerator scale, in one command: plan, pilot, or the whole sweep.

  python -m benchmarks.reproduce_accelerator --mode=plan    # times each row's step: JSON estimate
  python -m benchmarks.reproduce_accelerator --mode=pilot   # ~10 GPU minutes: vanilla, ANT-Nash
  python -m benchmarks.reproduce_accelerator --mode=full    # the core rows x 3 seeds (hours)

The scale (SCALE below, on top of reproduce_table1's rows and configs/fashion_mnist.py): the
default UNet at base 64 (4.8M parameters; the CPU sweep's is base 16), batch 120 (k = 1 and 5
both divide it), 30x the CPU budget (18,000 steps), 5 evaluations of 5,000 DDIM-50 samples.
`plan` compiles each row's step on this machine, times --timing_steps of it and one sampling
batch, and prints the wall time of the full sweep and of the pilot from those measurements
(per-row step times differ: per-cluster-gradient steps of Nash-MTL and PCGrad). `pilot` runs
vanilla, ANT-Nash-MTL and vanilla fed a fixed-norm gradient (the control docs/results.md's
diagnostics call for) for one seed at --pilot_steps with 2 evaluations of 2,000 samples, the
sweep's workdir and resume as reproduce_table1. `full` is the same sweep at SCALE: it resumes,
so it can be spread over several allocations (--stop_after_runs).
Not run yet: no accelerator was available when it was written (README: Status).
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import reproduce_table1 as table1
from configs import fashion_mnist
from diffmtl.analysis import sweep, sweep_report
from diffmtl.data import pipeline
from diffmtl.errors import exit_on_user_error
from diffmtl.evaluation import evaluator as evaluation
from diffmtl.training import experiment

FLAGS = flags.FLAGS
SCALE = {
    "model.base_channels": 64,
    "model.num_groups": 32,
    "train.batch_size": 120,
    "train.num_microbatches": 1,
    "train.microbatch_loop": "scan",
    "sampling.num_steps": 50,
    "sampling.batch_size": 1000,
    "eval.batch_size": 1000,
    "task_gradient_cosine_every_steps": 0,
    "log_every_steps": 100,
}
FULL = {"steps": 18_000, "evals": 5, "samples": 5_000, "seeds": (0, 1, 2)}
CORE = (
    "vanilla",
    "stratified",
    "ant_uw",
    "ant_nash",
    "ant_pcgrad",
    "min_snr",
    "vanilla_fixed_norm",
)
PILOT = ("vanilla", "ant_nash", "vanilla_fixed_norm")


def base_config():
    return sweep.override(fashion_mnist.get_config(), SCALE)


def time_row(row: sweep.Row, timing_steps: int) -> dict:
    """Seconds per training step (median of `timing_steps`, after a compile run; both compiled
    steps in the MTL method's proportion) and per sampling batch of the row's config."""
    config = sweep.override(base_config(), row.overrides)
    exp = experiment.build_experiment(config)
    state = experiment.initial_state(config, exp)
    data = pipeline.GlobalBatchIterator(exp.source, 0, exp.layout, exp.mesh)
    batch = next(data)
    times = []
    for i in range(timing_steps + 1):
        start = time.perf_counter()
        step = exp.train_step[exp.method.needs_task_grads(i, config.mtl)]
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    sample = evaluation.experiment_sampler(config, exp)
    indices = np.arange(config.sampling.batch_size)
    jax.block_until_ready(sample(state.ema_params, 0, indices))  # compile
    start = time.perf_counter()
    jax.block_until_ready(sample(state.ema_params, 0, indices))
    return {
        "row": row.name,
        "step_s": statistics.median(times[1:]),
        "sample_batch_s": time.perf_counter() - start,
    }


def estimate(timings: list[dict], names, steps: int, evals: int, samples: int, seeds: int):
    """Hours of training plus sampling (features and metrics are small beside it)."""
    by_row = {t["row"]: t for t in timings}
    batches = -(-samples // SCALE["sampling.batch_size"])
    seconds = sum(
        steps * by_row[n]["step_s"] + evals * batches * by_row[n]["sample_batch_s"] for n in names
    )
    return round(seeds * seconds / 3600, 2)


def plan() -> str:
    timings = [time_row(row, FLAGS.timing_steps) for row in table1.named(CORE)]
    return json.dumps(
        {
            "device": jax.devices()[0].device_kind,
            "timings": timings,
            "full_hours": estimate(timings, CORE, FULL["steps"], FULL["evals"], FULL["samples"], 3),
            "pilot_hours": estimate(timings, PILOT, FLAGS.pilot_steps, 2, 2_000, 1),
            "full": {**FULL, "rows": CORE},
        },
        indent=1,
    )


def sweep_of(mode: str) -> str:
    if mode == "pilot":
        names, steps, evals, samples, seeds = PILOT, FLAGS.pilot_steps, 2, 2_000, (0,)
    else:
        names, steps, evals, samples, seeds = (CORE, FULL["steps"], FULL["evals"],
                                               FULL["samples"], FULL["seeds"])  # fmt: skip
    settings = sweep.Settings(
        seeds=seeds,
        num_train_steps=steps,
        eval_steps=sweep.eval_steps(steps, evals),
        num_samples=samples,
        tas_overrides=table1.TAS,
    )
    workdir = f"{FLAGS.workdir}/{mode}"
    rows = table1.named(names)
    results = sweep.run_sweep(base_config(), rows, settings, workdir, FLAGS.stop_after_runs)
    return sweep_report.write_report(workdir, rows, results)


def main(argv):
    del argv
    table1.use_compile_cache()
    if FLAGS.mode == "plan":
        print(exit_on_user_error(plan))
    else:
        print(exit_on_user_error(sweep_of, FLAGS.mode))


def define_flags() -> None:
    flags.DEFINE_enum("mode", "plan", ["plan", "pilot", "full"], "What to run (module doc).")
    flags.DEFINE_string("workdir", "workdirs/accelerator", "Sweeps go to <workdir>/<mode>.")
    flags.DEFINE_integer("timing_steps", 20, "plan: timed steps per row (after one compile run).")
    flags.DEFINE_integer("pilot_steps", 4_000, "pilot: the step budget (6.7x the CPU sweep's).")
    flags.DEFINE_integer("stop_after_runs", 0, "Stop after this many runs did work (0: finish).")
    flags.DEFINE_string("compile_cache", "workdirs/jax_cache", "Persistent XLA compile cache.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
