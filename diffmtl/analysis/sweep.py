"""A resumable sweep: rows (config overrides) x seeds, each run trained once and evaluated at
several checkpoints, recorded in <workdir>/results.json.

For every (row, seed), in seed-major order (a sweep that stops early has whole seeds):
  1. train <workdir>/runs/<row>/seed_<s> with loop.train_and_evaluate, saving a checkpoint at
     every evaluation step and keeping all of them; its own final evaluation (metrics.json) is
     the last evaluation step's entry. A killed run resumes from its newest checkpoint.
  2. evaluate every other evaluation step's checkpoint (EMA params: FID, precision, recall,
     Inception Score, validation loss) with the same Evaluator, so all steps are comparable.
results.json is rewritten after each entry, so a stop (a kill, a session ending, stop_after_runs)
loses at most the entry in progress; a later call skips what it holds. Every run of a seed starts
from the same parameters and sees the same images in the same order (config.seed), with one step
budget; rows differ only in their overrides. A row whose clustering.method is 'gradient' reads
the task affinity (--mode=tas, analysis/tas_command.py) of `tas_row`'s first-seed run, computed
once when first needed.

Several processes may share a workdir (run_sweep's worker = (i, n): every n-th run each, e.g.
one process per CPU core): each writes only its own runs into results.json, under a lock of the
workdir, and each run records the hosts it ran on.

A re-evaluation sweep (Settings.checkpoints_from) trains nothing: it evaluates the checkpoints
another sweep trained, with its config changed by Settings.eval_overrides (e.g. ancestral
sampling instead of DDIM), into its own results.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import time

import jax
import ml_collections
from absl import logging
from etils import epath

from diffmtl import config_fields
from diffmtl.analysis import tas_command
from diffmtl.errors import UserError
from diffmtl.evaluation import evaluator as evaluation
from diffmtl.evaluation.metrics import reference
from diffmtl.training import checkpointing, experiment, loop, resume


@dataclasses.dataclass(frozen=True)
class Row:
    """One table row: `overrides` maps dotted config fields to values ('mtl.method': 'uw').
    `control`: the row it is also compared with, seed by seed, in the report's matched pairs
    (a variant of the baseline with the same change, e.g. both at another learning rate)."""

    name: str
    label: str
    group: str
    overrides: dict
    control: str = ""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every run of the sweep shares (recorded in results.json; a resume must match)."""

    seeds: tuple[int, ...]
    num_train_steps: int
    eval_steps: tuple[int, ...]  # Ascending; the last is num_train_steps.
    num_samples: int  # Samples per FID / precision / recall.
    tas_row: str = "vanilla"  # Whose first-seed run gives the gradient rows their TAS.
    tas_overrides: tuple = ()  # (dotted field, value) pairs of the TAS computation.
    checkpoints_from: str = ""  # Re-evaluate the runs of this sweep workdir (train nothing).
    eval_overrides: tuple = ()  # (dotted field, value) pairs of a re-evaluation's config.
    # Samples of the FID at the last step (0: num_samples): a precise final figure while the
    # curve's earlier evaluations keep the cheaper count.
    final_num_samples: int = 0


def _recorded(settings: dict) -> dict:
    """Settings as compared on resume: fields at their defaults left out, so results.json of a
    version that lacked a field still matches."""
    defaults = json.loads(json.dumps(dataclasses.asdict(Settings((), 1, (1,), 1))))
    optional = {
        f.name for f in dataclasses.fields(Settings) if f.default is not dataclasses.MISSING
    }
    return {k: v for k, v in settings.items() if not (k in optional and v == defaults[k])}


def eval_steps(num_train_steps: int, num_evals: int) -> tuple[int, ...]:
    """`num_evals` evenly spaced steps ending at num_train_steps, e.g. (200, 400, 600, 800)."""
    if not 1 <= num_evals <= num_train_steps or num_train_steps % num_evals:
        raise UserError(
            f"num_evals={num_evals} must divide num_train_steps={num_train_steps} (evaluations "
            "are evenly spaced checkpoints)"
        )
    every = num_train_steps // num_evals
    return tuple(every * (i + 1) for i in range(num_evals))


def override(config: ml_collections.ConfigDict, fields) -> ml_collections.ConfigDict:
    """A copy of `config` with dotted fields set ({'clustering.k': 5} or (name, value) pairs)."""
    config = config.copy_and_resolve_references()
    items = fields.items() if isinstance(fields, dict) else fields
    with config.unlocked():
        for name, value in items:
            config_fields.check_field(config, name, "sweep override")
            *parents, leaf = name.split(".")
            node = config
            for parent in parents:
                node = node[parent]
            node[leaf] = value
    return config


def run_name(row: Row, seed: int) -> str:
    return f"{row.name}/seed_{seed}"


def run_dir(workdir: str, row: Row, seed: int) -> str:
    return os.path.join(workdir, "runs", row.name, f"seed_{seed}")


def tas_source(workdir: str, rows: list[Row], settings: Settings) -> tuple[Row, int, str]:
    """(row, seed, run directory) of the run whose TAS the gradient rows use."""
    row = next(row for row in rows if row.name == settings.tas_row)
    seed = settings.seeds[0]
    return row, seed, run_dir(workdir, row, seed)


def tas_path(workdir: str, rows: list[Row], settings: Settings) -> str:
    return os.path.join(tas_source(workdir, rows, settings)[2], "tas.npy")


def run_config(base, row: Row, seed: int, settings: Settings, workdir: str, rows: list[Row]):
    """The config of (row, seed): `base` + the row's overrides + the sweep's shared fields."""
    config = override(base, row.overrides)
    every = settings.eval_steps[0]
    shared = {
        "seed": seed,
        "train.num_train_steps": settings.num_train_steps,
        "checkpoint_every_steps": every,
        "keep_checkpoints": len(settings.eval_steps),
        "eval.every_steps": 0,
        "eval.num_samples": settings.final_num_samples or settings.num_samples,
        "eval.reference_path": evaluation.reference_path(base, workdir),
    }
    if config.clustering.method == "gradient":  # The TAS of the sweep that trains the run.
        shared["clustering.tas_path"] = tas_path(
            settings.checkpoints_from or workdir, rows, settings
        )
    return override(config, shared)


def check_rows(rows: list[Row], settings: Settings) -> None:
    """One-line refusals of a sweep that cannot run, before anything is trained."""
    names = [row.name for row in rows]
    if len(set(names)) != len(names):
        raise UserError(f"sweep rows must have distinct names, got {names}")
    gradient = [row.name for row in rows if row.overrides.get("clustering.method") == "gradient"]
    if gradient and settings.tas_row not in names[: names.index(gradient[0])]:
        raise UserError(
            f"rows {gradient} need the TAS of row {settings.tas_row!r}: list it before them"
        )
    steps = settings.eval_steps
    if list(steps) != sorted(set(steps)) or steps[-1] != settings.num_train_steps:
        raise UserError(f"eval_steps {steps} must ascend and end at {settings.num_train_steps}")
    if any(step % steps[0] for step in steps):
        raise UserError(f"eval_steps {steps} must be multiples of the first (checkpoint cadence)")
    if settings.eval_overrides and not settings.checkpoints_from:
        raise UserError("eval_overrides re-evaluate another sweep's runs: set checkpoints_from")


def finished(record: dict, eval_steps) -> bool:
    """Whether a run's record (results.json's runs[name]) holds every step of `eval_steps` (a
    run stopped mid-evaluation can hold the final step without an earlier one)."""
    return all(str(step) in record.get("evals", {}) for step in eval_steps)


class Results:
    """results.json: {'settings': ..., 'runs': {'<row>/seed_<s>': {row, seed, hosts, boundaries,
    train_seconds, evals: {'<step>': {fid, precision, recall, inception_score, val_loss}}}}}."""

    def __init__(self, workdir: str, settings: Settings):
        self.path = epath.Path(workdir) / "results.json"
        recorded = dataclasses.asdict(settings)
        recorded = json.loads(json.dumps(recorded))  # tuples -> lists, as stored
        if self.path.exists():
            self.data = json.loads(self.path.read_text())
            if _recorded(self.data["settings"]) != _recorded(recorded):
                raise UserError(
                    f"{self.path} was written by a sweep with other settings "
                    f"({self.data['settings']}): rerun with those or use a new --workdir"
                )
        else:
            self.data = {"settings": recorded, "runs": {}}
        self.touched: set[str] = set()

    def finished(self, name: str) -> bool:
        """Whether run `name` holds every evaluation step."""
        return finished(self.data["runs"].get(name, {}), self.data["settings"]["eval_steps"])

    def run(self, name: str) -> dict:
        """Run `name`'s record (created empty), updated in place by the caller."""
        self.touched.add(name)
        return self.data["runs"].setdefault(name, {"evals": {}})

    def forget(self, name: str) -> None:
        """Drops run `name`'s record (at the next save), so the sweep does it again."""
        self.touched.add(name)
        self.data["runs"].pop(name, None)

    def save(self) -> None:
        """Writes the runs this object touched (and its summary) into the file as it is on disk
        now, so sweep workers that share it, each with its own runs, keep each other's."""
        if jax.process_index() != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with workdir_lock(str(self.path.parent)):
            data = json.loads(self.path.read_text()) if self.path.exists() else self.data
            for name in self.touched:  # Its own runs: updated, or dropped by forget().
                if name in self.data["runs"]:
                    data["runs"][name] = self.data["runs"][name]
                else:
                    data["runs"].pop(name, None)
            if "summary" in self.data:
                data["summary"] = self.data["summary"]
            self.data = data
            partial = self.path.parent / (self.path.name + ".partial")
            partial.write_text(json.dumps(self.data, indent=2))
            partial.replace(self.path)  # Atomic: a kill leaves the old or the new file.


@contextlib.contextmanager
def workdir_lock(workdir: str):
    """An exclusive lock of a local `workdir` between processes (sweep workers); none for
    remote paths (gs://), which one process writes."""
    if "://" in workdir:
        yield
        return
    with open(os.path.join(workdir, ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def host(cores: int = 0) -> str:
    """The hardware a run's numbers came from: the device kind and, on a CPU, its model name,
    family and model, and how many of its cores the process may use when that is not all of them
    ('cpu: AMD EPYC (family 25, model 17), 1 of 2 cores'; `cores`: that count, 0: this
    process's). XLA picks kernels (and so float reduction orders) by the CPU and splits its
    matmuls by the thread count: bitwise checks compare runs of one host."""
    kind = jax.devices()[0].device_kind
    if jax.default_backend() != "cpu":
        return kind
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:  # The first processor's block.
                if not line.strip():
                    break
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:
        pass
    name = fields.get("model name", platform.machine())
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    cores, total = cores or len(os.sched_getaffinity(0)), os.cpu_count()
    return f"{kind}: {name}" + (f", {cores} of {total} cores" if cores < total else "")


def _entry(metrics: dict) -> dict:
    """The recorded subset of an Evaluator's metrics."""
    names = {
        "eval/fid": "fid",
        "eval/precision": "precision",
        "eval/recall": "recall",
        "eval/inception_score": "inception_score",
        "val/loss": "val_loss",
    }
    return {short: float(metrics[long]) for long, short in names.items() if long in metrics}


def train_run(config, directory: str, record: dict) -> None:
    """Trains (or finishes) one run; records the final step's evaluation from its metrics.json."""
    start = time.perf_counter()
    loop.train_and_evaluate(config, directory)
    final = json.loads((epath.Path(directory) / "metrics.json").read_text())
    record["evals"][str(final["step"])] = _entry(final["metrics"])
    record["train_seconds"] = record.get("train_seconds", 0.0) + time.perf_counter() - start


def evaluate_checkpoints(
    config, directory: str, record: dict, steps, save, curve_samples: int | None = None
) -> None:
    """Evaluates the run's checkpoints at `steps` missing from record['evals'], saving each:
    the last step with eval.num_samples, the others with curve_samples (default the same)."""
    curve_samples = curve_samples or config.eval.num_samples
    missing = [step for step in steps if str(step) not in record["evals"]]
    if not missing:
        return
    exp = experiment.build_experiment(config)
    manager = checkpointing.make_manager(directory, config.keep_checkpoints)
    evaluator = evaluation.Evaluator(config, exp, directory)
    restore = resume.checkpoint_restorer(config, exp, manager, directory)
    final = config.train.num_train_steps
    for step in missing:  # eval.num_samples is the final count (run_config); the rest: curve
        state, _ = restore(step)
        samples = config.eval.num_samples if step == final else curve_samples
        metrics, _ = evaluator(state.ema_params, samples)
        record["evals"][str(step)] = _entry(metrics)
        save()
        logging.info("sweep: %s step %d: %s", directory, step, evaluator.headline(metrics))


def worker_plan(rows: list[Row], seeds, worker: tuple[int, int] = (0, 1)) -> list[tuple]:
    """The runs of sweep worker (i, n): every n-th of the seed-major plan from the i-th, as
    (index in the whole plan, seed, row)."""
    mine, workers = worker
    if not 0 <= mine < workers:
        raise UserError(f"worker {mine}/{workers} must be i/n with 0 <= i < n")
    plan = [(seed, row) for seed in seeds for row in rows]
    return [(index, seed, row) for index, (seed, row) in enumerate(plan)][mine::workers]


def missing_checkpoints(directory: str, steps) -> list[int]:
    """The steps of `steps` the run in `directory` holds no checkpoint of."""
    return [s for s in steps if not (epath.Path(directory) / "checkpoints" / str(s)).exists()]


def check_trained(directory: str, steps) -> None:
    """Refuses (one line) a re-evaluation of a run that lacks a checkpoint of `steps`."""
    missing = missing_checkpoints(directory, steps)
    if missing:
        raise UserError(
            f"{directory} has no checkpoints of steps {missing}: finish the sweep that trains "
            "it first (the same rows and seeds in the checkpoints_from workdir)"
        )


def ensure_reference(base, workdir: str) -> str:
    """The FID reference every run shares: base's eval.reference_path, or one made once from the
    data into `workdir` (what a run's validation requires to exist)."""
    path = evaluation.reference_path(base, workdir)
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    with workdir_lock(workdir):  # Sweep workers: one writes it, the others wait.
        if not epath.Path(path).exists():
            reference.write_reference(base, path)
    return path


def ensure_tas(config, directory: str, overrides) -> None:
    """Computes <directory>/tas.npy from that run's checkpoints unless it exists."""
    if not (epath.Path(directory) / "tas.npy").exists():
        print(tas_command.task_affinity_of_workdir(override(config, overrides), directory))


def run_sweep(
    base,
    rows: list[Row],
    settings: Settings,
    workdir: str,
    stop_after_runs: int = 0,
    skip_untrained: bool = False,
    worker: tuple[int, int] = (0, 1),
) -> Results:
    """Trains and evaluates what results.json lacks; stops after `stop_after_runs` runs that
    did work (0: none), for a sweep spread over sessions. A re-evaluation refuses a run whose
    checkpoints are missing, or with `skip_untrained` passes over it (re-evaluating each run as
    soon as it is trained). worker = (i, n): this process does every n-th run of the plan from
    the i-th (n processes share the workdir, e.g. one per CPU core). Returns the (possibly
    partial) results."""
    check_rows(rows, settings)
    runs = worker_plan(rows, settings.seeds, worker)
    if worker[1] > 1 and any(row.overrides.get("clustering.method") == "gradient" for row in rows):
        raise UserError("rows with gradient clusters need one worker (they wait for a TAS)")
    results = Results(workdir, settings)
    ensure_reference(base, workdir)
    steps, total = settings.eval_steps, len(rows) * len(settings.seeds)
    done_now, start = 0, time.perf_counter()
    for index, seed, row in runs:
        if results.finished(run_name(row, seed)):
            continue
        trained = run_dir(settings.checkpoints_from, row, seed) if settings.checkpoints_from else ""
        if skip_untrained and trained and missing_checkpoints(trained, steps):
            continue
        if stop_after_runs and done_now == stop_after_runs:
            print(f"sweep: stopped after {done_now} runs (stop_after_runs); the same call goes on")
            break
        record = results.run(run_name(row, seed))
        config = run_config(base, row, seed, settings, workdir, rows)
        directory = run_dir(workdir, row, seed)
        elapsed = time.perf_counter() - start
        print(f"sweep: [{index + 1}/{total}] {row.name} seed {seed} ({elapsed:.0f} s)")
        record.update(row=row.name, seed=seed)
        if host() not in record.setdefault("hosts", []):  # A run resumed elsewhere lists both.
            record["hosts"].append(host())
        if settings.checkpoints_from:
            config, directory = override(config, settings.eval_overrides), trained
            check_trained(directory, steps)
        elif str(settings.num_train_steps) not in record["evals"]:
            if config.clustering.method == "gradient":
                source, source_seed, source_dir = tas_source(workdir, rows, settings)
                source_config = run_config(base, source, source_seed, settings, workdir, rows)
                ensure_tas(source_config, source_dir, settings.tas_overrides)
            train_run(config, directory, record)
        if "boundaries" not in record:
            clusters = json.loads((epath.Path(directory) / "clusters.json").read_text())
            record["boundaries"] = clusters["intervals"]
            results.save()
        evaluate_checkpoints(config, directory, record, steps, results.save, settings.num_samples)
        done_now += 1
        fids = ", ".join(f"{step} {record['evals'][str(step)]['fid']:.2f}" for step in steps)
        print(f"sweep: {row.name} seed {seed} done: FID at steps {fids}")
    return results
