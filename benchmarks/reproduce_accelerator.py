"""The Table 1 reproduction at accelerator scale, in one command: plan, pilot, or the whole sweep.

  python -m benchmarks.reproduce_accelerator --mode=plan    # times each row's step: JSON estimate
  python -m benchmarks.reproduce_accelerator --mode=pilot   # ~5 GPU minutes of training + FID
  python -m benchmarks.reproduce_accelerator --mode=full    # the core rows x 3 seeds (hours)

The scale (SCALE below, on top of reproduce_table1's rows and configs/fashion_mnist.py): the
default UNet at base 64 (4.8M parameters; the CPU sweep's is base 16), batch 120 (k = 1 and 5
both divide it), 30x the CPU budget (18,000 steps), 5 evaluations of 5,000 DDIM-50 samples.
`plan` compiles each row's step on this machine, times --timing_steps of it and one sampling
batch, and prints the wall time of the full sweep and of the pilot from those measurements
(per-row step times differ: per-cluster-gradient steps of Nash-MTL and PCGrad).
`pilot`: vanilla and ANT-Nash-MTL at learning rates 2e-3 and 4e-3 (the CPU reproduction's best
rates), seed 0, as many steps as fit in --pilot_train_seconds of training. The budget counts
one compile per distinct program (optax bakes the learning rate into the step, so each row is
a program of its own): vanilla and Nash-MTL at 2e-3 are compiled and timed first, which also
puts them in the compile cache, and the two 4e-3 programs are charged one compile each. Then
FID_FMNIST with --pilot_samples samples at the last step. It writes pilot_plan.json and, as each
run finishes, pilot_results.json into --out (a run cut short still leaves its figures).
`full` is the same sweep at SCALE: it resumes, so it can be spread over several allocations
(--stop_after_runs). --scale=cpu shrinks the model and the evaluation for a CPU rehearsal
(tools/accelerator_run.sh; tests/test_accelerator_rehearsal.py).
Not run on an accelerator yet: none was available when it was written (docs/results.md).
"""

from __future__ import annotations

import json
import os
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
# The CPU rehearsal's scale: the tests' three-convolution model, a few sampling steps.
CPU_SCALE = {
    **SCALE,
    "model.name": "toy",
    "model.base_channels": 8,
    "model.num_groups": 4,
    "train.batch_size": 40,
    "sampling.num_steps": 5,
    "sampling.batch_size": 100,
    "eval.batch_size": 100,
    "eval.num_reference": 500,
    "eval.val_num_images": 40,
    "log_every_steps": 10,
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
PILOT = ("vanilla_lr2e3", "ant_nash_lr2e3", "vanilla_lr4e3", "ant_nash_lr4e3")
PILOT_TIMED = 2  # The first two pilot rows are timed; the others have their programs' cost.


def base_config(scale: str = "accelerator"):
    """configs/fashion_mnist.py at SCALE ('accelerator') or CPU_SCALE ('cpu')."""
    return sweep.override(fashion_mnist.get_config(), CPU_SCALE if scale == "cpu" else SCALE)


def time_row(row: sweep.Row, timing_steps: int, scale: str = "accelerator") -> dict:
    """Seconds per training step (median of `timing_steps`, after a compile run; both compiled
    steps in the MTL method's proportion) and per sampling batch of the row's config."""
    config = sweep.override(base_config(scale), row.overrides)
    exp = experiment.build_experiment(config)
    state = experiment.initial_state(config, exp)
    data = pipeline.GlobalBatchIterator(exp.source, 0, exp.layout, exp.mesh)
    batch = next(data)
    times, start_all = [], time.perf_counter()
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
    step_s = statistics.median(times[1:])
    return {
        "row": row.name,
        "step_s": step_s,
        "compile_s": times[0] - step_s,  # the first call's extra time: compiling its program(s)
        "sample_batch_s": time.perf_counter() - start,
        "timing_wall_s": time.perf_counter() - start_all,
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
    timings = [time_row(row, FLAGS.timing_steps, FLAGS.scale) for row in table1.named(CORE)]
    return json.dumps(
        {
            "device": jax.devices()[0].device_kind,
            "timings": timings,
            "full_hours": estimate(timings, CORE, FULL["steps"], FULL["evals"], FULL["samples"], 3),
            "pilot_steps": pilot_steps(
                [t for t in timings if t["row"] in ("vanilla", "ant_nash")],
                PILOT,
                FLAGS.pilot_train_seconds,
                FLAGS.pilot_round,
            ),
            "full": {**FULL, "rows": CORE},
        },
        indent=1,
    )


def pilot_steps(timings: list[dict], names, train_seconds: float, round_to: int) -> int:
    """Steps per run such that every pilot run's training, plus one compile for each program
    not yet compiled (the untimed rows'), fits in `train_seconds`; a multiple of round_to, at
    least round_to. timings: time_row's of the timed rows (vanilla's and Nash-MTL's cost)."""
    by_method = {"nash" in t["row"]: t for t in timings}
    per_step = sum(by_method["nash" in name]["step_s"] for name in names)
    compiles = (len(names) - len(timings)) * max(t["compile_s"] for t in timings)
    steps = int((train_seconds - compiles) / per_step) // round_to * round_to
    return max(steps, round_to)


def _write(name: str, data: dict) -> None:
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, name), "w") as f:
        json.dump(data, f, indent=1)


def pilot() -> str:
    """Times the pilot's programs, sizes its runs to the budget, trains and evaluates them."""
    rows = table1.named(PILOT)
    timings = [time_row(row, FLAGS.timing_steps, FLAGS.scale) for row in rows[:PILOT_TIMED]]
    steps = pilot_steps(timings, PILOT, FLAGS.pilot_train_seconds, FLAGS.pilot_round)
    plan_record = {
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "scale": FLAGS.scale,
        "train_seconds": FLAGS.pilot_train_seconds,
        "timings": timings,
        "steps": steps,
        "samples": FLAGS.pilot_samples,
        "rows": PILOT,
    }
    _write("pilot_plan.json", plan_record)
    print(json.dumps(plan_record), flush=True)
    settings = sweep.Settings(
        seeds=(0,),
        num_train_steps=steps,
        eval_steps=(steps,),
        num_samples=FLAGS.pilot_samples,
        tas_overrides=table1.TAS,
    )
    workdir = f"{FLAGS.workdir}/pilot"
    results = None
    for _ in rows:  # One run at a time: its figures are out as it ends.
        base = base_config(FLAGS.scale)
        results = sweep.run_sweep(base, rows, settings, workdir, stop_after_runs=1)
        _write("pilot_results.json", {"plan": plan_record, **results.data})
        if all(results.finished(sweep.run_name(row, 0)) for row in rows):
            break
    return sweep_report.write_report(workdir, rows, results)


def sweep_of(mode: str) -> str:
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
    base = base_config(FLAGS.scale)
    results = sweep.run_sweep(base, rows, settings, workdir, FLAGS.stop_after_runs)
    return sweep_report.write_report(workdir, rows, results)


def main(argv):
    del argv
    table1.use_compile_cache()
    if FLAGS.mode == "plan":
        print(exit_on_user_error(plan))
    elif FLAGS.mode == "pilot":
        print(exit_on_user_error(pilot))
    else:
        print(exit_on_user_error(sweep_of, FLAGS.mode))


def define_flags() -> None:
    flags.DEFINE_enum("mode", "plan", ["plan", "pilot", "full"], "What to run (module doc).")
    flags.DEFINE_string("workdir", "workdirs/accelerator", "Sweeps go to <workdir>/<mode>.")
    flags.DEFINE_integer("timing_steps", 20, "plan: timed steps per row (after one compile run).")
    flags.DEFINE_float("pilot_train_seconds", 300.0, "pilot: training time of all its runs.")
    flags.DEFINE_integer("pilot_round", 50, "pilot: steps per run are a multiple of this.")
    flags.DEFINE_integer("pilot_samples", 2_000, "pilot: samples of its FID at the last step.")
    flags.DEFINE_string("out", "workdirs/accelerator", "pilot: where its JSON files go.")
    flags.DEFINE_enum("scale", "accelerator", ["accelerator", "cpu"], "SCALE or CPU_SCALE.")
    flags.DEFINE_integer("stop_after_runs", 0, "Stop after this many runs did work (0: finish).")
    flags.DEFINE_string("compile_cache", "workdirs/jax_cache", "Persistent XLA compile cache.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
