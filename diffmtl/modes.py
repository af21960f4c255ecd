"""What `main.py --mode=...` runs: train; sample / evaluate a workdir's newest checkpoint; the
task affinity of its checkpoints (tas) or the negative transfer gap experiment (ntg)."""

from __future__ import annotations

import os

import jax

from diffmtl.analysis import negative_transfer, tas_command
from diffmtl.errors import UserError
from diffmtl.evaluation import ema_sweep as ema_sweep_lib
from diffmtl.evaluation import evaluator as evaluation
from diffmtl.training import dry_run as dry_run_lib
from diffmtl.training import loop, resume


def sample(config, workdir: str) -> str:
    """Writes eval.num_samples samples of the newest checkpoint to <workdir>/samples/."""
    exp, params, step = resume.restore_ema_params(config, workdir)
    sampler = evaluation.experiment_sampler(config, exp)
    samples = evaluation.generate_samples(
        sampler, params, config.eval.num_samples, config.sampling, exp.codec
    )
    path = evaluation.write_sample_files(
        os.path.join(workdir, "samples"), samples, config.sampling.grid_size
    )
    return f"{len(samples)} samples of step {step} in {path}"


def evaluate_checkpoint(config, workdir: str) -> str:
    """Evaluates the newest checkpoint: metrics.json and validation_loss.png in `workdir`."""
    exp, params, step = resume.restore_ema_params(config, workdir)
    params = ema_sweep_lib.post_hoc_params(workdir, params, step, config.eval.ema_sigma_rel)
    evaluator = evaluation.Evaluator(config, exp, workdir)
    metrics, _ = evaluator(params, config.eval.num_samples)
    path = evaluator.write_final(metrics, step)
    ema = (
        f", post-hoc EMA sigma_rel {config.eval.ema_sigma_rel:g}"
        if config.eval.ema_sigma_rel
        else ""
    )
    return f"step {step}{ema}: {evaluator.headline(metrics)} ({path})"


def train_mode(config, workdir: str) -> str:
    loop.train_and_evaluate(config, workdir)
    where = f"samples.png, metrics.json, checkpoints/ and TensorBoard events are in {workdir}"
    if jax.process_index() > 0:  # Process 0 writes metrics.json: here it may not exist yet.
        return where
    return f"{evaluation.read_headline(workdir)}\n{where}"


def dry_run(config, device_memory_gb: float, topology: str = "") -> str:
    """Compiles the config's step without data (for a TPU or GPU `topology` if given); the
    report, or UserError if it cannot fit."""
    report = dry_run_lib.dry_run(config, topology=topology)
    text = "\n".join(report.lines())
    print(text)
    dry_run_lib.check_fits(report, device_memory_gb)
    return f"fits in {device_memory_gb:g} GiB per device" if device_memory_gb else "done"


def task_affinity(config, workdir: str) -> str:
    """TAS of the workdir's checkpoints: tas.npy and tas.png (analysis/tas_command.py)."""
    return tas_command.task_affinity_of_workdir(config, workdir)


def negative_transfer_gap(config, workdir: str) -> str:
    """Specialists per interval and the NTG per interval (analysis/negative_transfer.py)."""
    return negative_transfer.negative_transfer_gap(config, workdir)


def check_workdir(workdir: str) -> None:
    """UserError unless `workdir` can hold a run: a directory (or a path to create) that is
    writable, whose checkpoints/ (if any) is a directory. Buckets (gs://...) are not probed."""
    if "://" in workdir:
        return
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--workdir {workdir} is a file, not a directory: choose another path")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--workdir {workdir}: {existing} is not writable; choose another path")
    checkpoints = os.path.join(path, "checkpoints")
    if os.path.exists(checkpoints) and not os.path.isdir(checkpoints):
        raise UserError(
            f"--workdir {workdir} holds a file named checkpoints, not our checkpoint directory: "
            "move it away or choose another workdir"
        )


def _with_workdir_check(mode):
    def run(config, workdir: str) -> str:
        check_workdir(workdir)
        return mode(config, workdir)

    run.__doc__ = mode.__doc__
    return run


MODES = {
    name: _with_workdir_check(mode)
    for name, mode in {
        "train": train_mode,
        "sample": sample,
        "evaluate": evaluate_checkpoint,
        "ema_sweep": ema_sweep_lib.ema_sweep,
        "tas": task_affinity,
        "ntg": negative_transfer_gap,
    }.items()
}
