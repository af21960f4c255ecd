"""Round 2 of the reproduction on this CPU (docs/results.md), every stage in order, resumable.

  python -m benchmarks.round2 [--stages=diagnostics,ancestral,lr,table2,screen,long,table2_lr]
      [--long_steps=3000] [--workers=2] [--dry]

Each stage is one command of docs/results.md (printed before it runs; --dry prints them all and
runs nothing), started as a subprocess; every one resumes where it stopped, so after a kill or a
session's end the same command goes on. The long comparison's two new aggregators are the
screen's best two (lowest mean FID at its last step), so `long` needs the screen finished.
`lr` adds vanilla and ANT-Nash-MTL at learning rates 2e-3 and 4e-3 to the diagnostics' workdir
(5e-4 and 1e-3 are there already): both rows' learning-rate curve at 600 steps, 3 seeds.
`table2_lr` does the same for Table 2's latent DiT (its rate is 1e-3): vanilla and ANT-Nash-MTL
at 2e-3 and 4e-3 added to Table 2's workdir, guided and unguided. `long` and `table2_lr` run
as --workers processes sharing the workdir (every n-th run each), each pinned to one core: two
one-core runs of the long comparison's UNet train about 1.4x faster than one two-core run here
(docs/results.md, 2b; not measured for Table 2's DiT).

A stage's results.json is committed in docs/ (SNAPSHOTS) as its runs finish, for workdirs/ does
not outlive a machine: before its stages, round2 starts every workdir that lacks a results.json
from its snapshot, so a new machine redoes no finished run (the sweep skips what results.json
holds; a run that was in progress starts over). After runs finish:

  python -m benchmarks.round2 --snapshot   # workdirs' results.json -> docs/, then commit them

--snapshot also adds the MTL weights of every finished long run on this machine (tools/
loss_weights.py, from its TensorBoard events, which die with the machine) to LONG_WEIGHTS.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys

from absl import app, flags

from benchmarks import reproduce_table1, reproduce_table2
from diffmtl.analysis import sweep

FLAGS = flags.FLAGS
STAGES = ("diagnostics", "ancestral", "lr", "table2", "screen", "long", "long_check", "table2_lr")
DIAGNOSTICS = "workdirs/table1_diag"
SCREEN = "workdirs/round2_screen"
SCREEN_ROWS = (
    "vanilla,continuous_uw,ant_famo,ant_dwa,ant_rlw,ant_mgda,ant_cagrad,ant_imtl_g,"
    "ant_aligned_mtl,ant_upgrad,ant_dualproj,ant_config"
)
# The learning-rate curve (docs/results.md section 1d, 3 seeds, 600 steps) found the table's 5e-4
# too small for both rows: by their seeds' mean vanilla is best at 4e-3 (282.1; 288.5 at 2e-3) and
# ANT-Nash-MTL at 2e-3 (282.0; 303.5 at 4e-3). The long run's controls are both rows at 2e-3, one
# change given to both: within 6.5 FID of each row's best at 600 steps, and the safer of the two
# for a 2.5x longer run, where the best rate of a fixed-rate Adam is usually no higher.
LR_CONTROLS = (2e-3,)
LONG_CORE = (
    "vanilla", "ant_uw", "ant_nash", "ant_pcgrad", "min_snr", "continuous_uw",
    *(row.name for row in reproduce_table1.learning_rate_rows(LR_CONTROLS)),
)  # fmt: skip
LR_CURVE = (2e-3, 4e-3)  # Stage lr's rates (5e-4 and 1e-3 are the diagnostics').
LONG = "workdirs/round2_long"
LONG_CHECK = "workdirs/round2_long_check"  # The acceptance check: one long run redone afresh.
LONG_WEIGHTS = "docs/round2_long_weights.json"  # run -> {step: weights, max_over_min}
TABLE2 = "workdirs/table2"
SNAPSHOTS = {  # workdir: the committed copy of its results.json
    DIAGNOSTICS: "docs/round2_diag_results.json",
    "workdirs/table1_diag_ancestral": "docs/round2_ancestral_results.json",
    TABLE2: "docs/round2_table2_results.json",
    os.path.join(TABLE2, "unguided"): "docs/round2_table2_unguided_results.json",
    SCREEN: "docs/round2_screen_results.json",
    LONG: "docs/round2_long_results.json",
}


def restore_snapshots(snapshots: dict = SNAPSHOTS) -> list[str]:
    """Copies each existing snapshot to <workdir>/results.json where that file is missing (never
    over one); returns the workdirs it started."""
    started = []
    for workdir, snapshot in snapshots.items():
        target = os.path.join(workdir, "results.json")
        if os.path.exists(snapshot) and not os.path.exists(target):
            os.makedirs(workdir, exist_ok=True)
            shutil.copyfile(snapshot, target)
            started.append(workdir)
    return started


def save_snapshots(snapshots: dict = SNAPSHOTS) -> list[str]:
    """Copies every existing <workdir>/results.json to its snapshot; returns the snapshots."""
    saved = []
    for workdir, snapshot in snapshots.items():
        source = os.path.join(workdir, "results.json")
        if os.path.exists(source):
            shutil.copyfile(source, snapshot)
            saved.append(snapshot)
    return saved


def save_long_weights(workdir: str = LONG, path: str = LONG_WEIGHTS) -> list[str]:
    """Adds to `path` the MTL weights at step 100 and every evaluation step of each finished
    run of `workdir` that is on disk and not in `path` yet; returns their names."""
    from tools import loss_weights  # Imports TensorFlow: only here.

    results = os.path.join(workdir, "results.json")
    if not os.path.exists(results):
        return []
    with open(results) as f:
        data = json.load(f)
    kept = {}
    if os.path.exists(path):
        with open(path) as f:
            kept = json.load(f)
    steps = [100, *data["settings"]["eval_steps"]]
    added = []
    for name, record in data["runs"].items():
        directory = os.path.join(workdir, "runs", name)  # name: <row>/seed_<s>
        finished = sweep.finished(record, steps[1:])
        if name not in kept and finished and os.path.isdir(directory):
            kept[name] = loss_weights.weights_at(directory, steps)
            added.append(name)
    if added:
        with open(path, "w") as f:
            json.dump(kept, f, indent=1)
    return added


def screen_summary() -> dict:
    """The screen's report summary: its workdir's results.json, else the committed snapshot."""
    path = os.path.join(SCREEN, "results.json")
    if not os.path.exists(path):
        path = SNAPSHOTS[SCREEN]
    with open(path) as f:
        return json.load(f)["summary"]


def best_new_aggregators(summary: dict, count: int = 2) -> list[str]:
    """The `count` screen rows of group 'aggregator' (continuous UW aside: the long run has it)
    with the lowest mean final FID."""
    candidates = [
        (entry["final"]["fid"][0], name)
        for name, entry in summary.items()
        if entry["group"] == "aggregator" and name != "continuous_uw"
    ]
    if len(candidates) < count:
        raise ValueError(f"the screen has {len(candidates)} aggregator rows: finish it first")
    return [name for _, name in sorted(candidates)[:count]]


def check_run(data: dict, hosts) -> tuple[str, int, str]:
    """(row, seed, host) the acceptance check redoes: a finished run of results.json `data`
    trained wholly on one of `hosts` (bitwise equality holds only there), ANT-Nash-MTL's first
    if there is one (its solver amplifies round-off most), else the first."""
    here = [
        (record["row"] != "ant_nash", record["row"], record["seed"], record["hosts"][0])
        for record in data["runs"].values()
        if len(record.get("hosts", [])) == 1
        and record["hosts"][0] in hosts
        and sweep.finished(record, data["settings"]["eval_steps"])
    ]
    if not here:
        raise ValueError(f"no finished run of the long comparison ran on one of {list(hosts)}")
    return min(here, key=lambda entry: entry[0])[1:]


def host_affinities() -> dict:
    """This machine's host strings (sweep.host) -> the CPU cores a process must be pinned to
    to run as that host (None: all): all cores, and one core (the long stage's workers)."""
    cores = sorted(os.sched_getaffinity(0))
    out = {sweep.host(): None}
    if len(cores) > 1:
        out[sweep.host(cores=1)] = {cores[0]}
    return out


def differences(table: dict, redone: dict) -> list[str]:
    """'<step> <metric>: <table's> != <redone's>' for every evaluation entry of run record
    `table` that `redone` does not equal exactly."""
    out = []
    for step, entry in table["evals"].items():
        for name, value in entry.items():
            again = redone["evals"].get(step, {}).get(name)
            if again != value:
                out.append(f"{step} {name}: {value!r} != {again!r}")
    return out


@functools.cache
def long_check() -> tuple[list[str], str, set | None]:
    """The check run's arguments (--rows, --seeds), name and cores to pin it to, from the long
    comparison's results.json (read once: the long stage is over when the check starts)."""
    path = os.path.join(LONG, "results.json")
    if FLAGS.dry and not os.path.exists(path):
        return ["--rows=<a run of this host>"], "", None
    affinities = host_affinities()
    with open(path) as f:
        row, seed, host = check_run(json.load(f), affinities)
    return [f"--rows={row}", f"--seeds={seed}"], f"{row}/seed_{seed}", affinities[host]


def report_check(name: str) -> str:
    """Whether the check's fresh run equals the long comparison's bitwise."""
    records = []
    for workdir in (LONG, LONG_CHECK):
        with open(os.path.join(workdir, "results.json")) as f:
            records.append(json.load(f)["runs"][name])
    diff = differences(*records)
    if diff:
        return f"{name} redone in {LONG_CHECK} differs from {LONG}'s: " + "; ".join(diff)
    fields = sum(len(entry) for entry in records[0]["evals"].values())
    return f"{name} redone in {LONG_CHECK} equals {LONG}'s bitwise ({fields} fields)"


def stage_args(stage: str) -> list[str]:
    """The reproduce command's arguments of `stage`."""
    table1 = ["-m", "benchmarks.reproduce_table1"]
    if stage in ("diagnostics", "lr"):
        rows = "vanilla,stratified,ant_uw,ant_nash,ant_uw_lr0025,ant_uw_frozen150,"
        rows += "stratified_uniform,stratified_ww,ant_nash_uniform,ant_uw_normalized,"
        rows += "ant_uw_lr0025_normalized,vanilla_fixed_norm,ant_nash_fixed_norm,vanilla_b2_099,"
        rows += "ant_nash_b2_099,vanilla_lr1e3,ant_nash_lr1e3"
        if stage == "lr":  # The diagnostics' runs plus the learning-rate curve's new rates.
            rows += "".join(f",{row.name}" for row in reproduce_table1.learning_rate_rows(LR_CURVE))
        return [*table1, f"--workdir={DIAGNOSTICS}", f"--rows={rows}"]
    if stage == "ancestral":
        return [
            *table1,
            "--workdir=workdirs/table1_diag_ancestral",
            f"--checkpoints_from={DIAGNOSTICS}",
            "--rows=vanilla,stratified,ant_uw,ant_nash",
            "--eval_overrides=sampling.method=ddpm,sampling.num_steps=100",
        ]
    if stage == "screen":
        return [*table1, f"--workdir={SCREEN}", "--seeds=0", f"--rows={SCREEN_ROWS}"]
    table2 = ["-m", "benchmarks.reproduce_table2", f"--workdir={TABLE2}"]
    if stage == "table2":
        return table2
    if stage == "table2_lr":
        return [*table2, f"--rows={','.join(row.name for row in reproduce_table2.catalogue())}"]
    budget = [f"--num_train_steps={FLAGS.long_steps}", "--num_evals=5", "--num_samples=1000"]
    if stage == "long_check":
        return [*table1, f"--workdir={LONG_CHECK}", *budget, *long_check()[0]]
    best = best_new_aggregators(screen_summary())
    return [*table1, f"--workdir={LONG}", *budget, f"--rows={','.join([*LONG_CORE, *best])}"]


def run_pinned(commands: list[tuple[list[str], set | None]]) -> None:
    """Runs the commands at once, each pinned to its cores (None: all); raises if one fails."""

    def start(command, cores):
        pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
        return subprocess.Popen(command, preexec_fn=pin)

    processes = [start(command, cores) for command, cores in commands]
    for process, (command, _) in zip(processes, commands, strict=True):
        if process.wait():
            raise subprocess.CalledProcessError(process.returncode, command)


def stage_commands(stage: str) -> list[tuple[list[str], set | None]]:
    """(command, cores to pin it to) of each process of `stage`: the long comparison and
    table2_lr run one worker per core (--workers), every other stage one process."""
    command = [sys.executable, *stage_args(stage)]
    if stage == "long_check":
        return [(command, long_check()[2])]
    cores = sorted(os.sched_getaffinity(0))
    workers = min(FLAGS.workers, len(cores))
    if stage not in ("long", "table2_lr") or workers < 2:
        return [(command, None)]
    return [([*command, f"--worker={i}/{workers}"], {cores[i]}) for i in range(workers)]


def main(argv):
    del argv
    if FLAGS.snapshot:
        print(f"round2: saved {save_snapshots()} and the weights of {save_long_weights()}")
        return
    if not FLAGS.dry:
        print(f"round2: started from their snapshots: {restore_snapshots()}", flush=True)
    for stage in FLAGS.stages:
        commands = stage_commands(stage)
        shown = " & ".join(" ".join(command[1:]) for command, _ in commands)
        print(f"round2: {stage}: {shown}", flush=True)
        if not FLAGS.dry:
            run_pinned(commands)
        if stage == "long_check" and not FLAGS.dry:
            print(f"round2: long_check: {report_check(long_check()[1])}", flush=True)


if __name__ == "__main__":
    flags.DEFINE_list("stages", list(STAGES), f"Stages in order, of {STAGES}.")
    # 1500 = 2.5x the table's 600: what fits about 8 hours here. Measured alone in the
    # diagnostics sweep: about 0.43 s per step and 25 s per 400-sample evaluation, so a run of
    # 1500 steps and 5 evaluations of 1000 samples is about 16 minutes; 30 runs (10 rows with
    # the two learning-rate controls) about 8.0 h (3000 steps, the 5x: about 13.4 h).
    flags.DEFINE_integer("long_steps", 1500, "The long comparison's budget (module doc).")
    flags.DEFINE_bool("dry", False, "Print the stages' commands; run nothing.")
    flags.DEFINE_integer(
        "workers", 2, "Processes of `long` and `table2_lr`, one per core (1: one process)."
    )
    flags.DEFINE_bool("snapshot", False, "Copy the workdirs' results.json to docs/; run nothing.")
    app.run(main)
