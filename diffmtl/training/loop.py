"""train_and_evaluate(config, workdir): the training loop, its cadence, logging and checkpoints.

The experiment is built first (experiment.py: config validation and data before any compile),
the newest checkpoint restored if any (resume.py), the run's programs compiled concurrently at
its first batch (programs.py), then each step picks the compiled step with or without
per-cluster gradients from the MTL method's host-side `needs_task_grads(step)`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import jax
import numpy as np
import tqdm
from absl import logging

from diffmtl.data import images, pipeline
from diffmtl.errors import UserError
from diffmtl.evaluation import evaluator as evaluator_lib
from diffmtl.training import (
    checkpointing,
    ema_snapshots,
    events,
    host_malloc,
    programs,
    resume,
    run_info,
)
from diffmtl.training.experiment import build_experiment
from diffmtl.training.train_state import TrainState


def _mean_metrics(history: list[dict]) -> dict[str, float]:
    """Averages the step metrics since the last report into named scalars."""
    host = jax.device_get(history)
    scalars = {}
    for key in host[0]:
        mean = np.mean([m[key] for m in host], axis=0)
        if mean.ndim == 0:
            scalars[f"train/{key}"] = float(mean)
        else:  # A [k] vector: one scalar per cluster.
            for i, value in enumerate(mean):
                scalars[f"train/{key}/cluster_{i}"] = float(value)
    return scalars


def write_samples(
    samples: np.ndarray, step: int, writer, workdir: str, num_classes: int = 0
) -> str:
    """Logs a grid of uint8 samples [n, H, W, C] (one row per class when class-conditional)
    and writes it to <workdir>/samples.png."""
    grid = images.image_grid(samples, num_classes=num_classes)
    writer.write_images(step, {"samples": grid[None]})
    path = os.path.join(workdir, "samples.png")
    if jax.process_index() == 0:
        images.save_png(path, grid)
    return path


def check_skips(metrics: dict, config, manager) -> None:
    """UserError once train.max_consecutive_skips steps in a row were non-finite (the step's guard
    kept the state unchanged, so every checkpoint holds finite values)."""
    skips, limit = int(metrics["consecutive_skips"]), config.train.max_consecutive_skips
    if skips >= limit:
        raise UserError(
            f"stopped: {skips} steps in a row had a non-finite loss or gradient "
            f"(train.max_consecutive_skips={limit}); the newest checkpoint (step "
            f"{manager.latest_step()}) is intact: lower train.learning_rate, set "
            "train.grad_clip_norm, or check the data"
        )


def _every(period: int, step: int) -> bool:
    return period > 0 and step % period == 0


def write_task_gradient_cosine(writer, step: int, cosine: jax.Array) -> None:
    """Logs the [k, k] cosines of the cluster gradients, one scalar per pair i < j."""
    cosine = np.asarray(jax.device_get(cosine))
    pairs = zip(*np.triu_indices(cosine.shape[0], 1), strict=True)
    writer.write_scalars(
        step, {f"task_gradient_cosine/{i}_{j}": float(cosine[i, j]) for i, j in pairs}
    )


def train_and_evaluate(
    config, workdir: str, on_log: Callable[[int, dict[str, float]], None] | None = None
) -> TrainState:
    """Trains `config` in `workdir`, resuming from its newest checkpoint; returns the last state.

    on_log(step, scalars), if given, sees every logged set of training scalars (what TensorBoard
    gets every log_every_steps: 'train/loss', 'train/task_losses/cluster_<i>',
    'train/loss_weights/cluster_<i>', ...), e.g. to plot them live in a notebook.
    """
    exp = build_experiment(config)
    if hint := host_malloc.advice(jax.default_backend()):
        logging.warning("%s", hint)
    manager = checkpointing.make_manager(workdir, config.keep_checkpoints)
    state, position = resume.restore_or_initialise(config, exp, manager, workdir)
    run_info.write_run_info(workdir, config, exp.boundaries)
    evaluator = evaluator_lib.Evaluator(config, exp, workdir)

    data = pipeline.GlobalBatchIterator(
        exp.source,
        config.seed,
        exp.layout,
        exp.mesh,
        position or pipeline.DataPosition(),
        config.data.random_flip,
    )
    writer = events.create_writer(workdir, just_logging=jax.process_index() > 0)
    snapshots = ema_snapshots.make_manager(workdir) if config.train.ema_profiles else None
    managers = [m for m in (manager, snapshots) if m is not None]
    existing = frozenset(snapshots.all_steps()) if snapshots is not None else frozenset()
    try:
        state = _train_loop(
            config, workdir, exp, state, data, managers, evaluator, writer, on_log, existing
        )
    finally:  # A stop (bad image, non-finite run) still lets an in-flight save complete.
        for m in managers:
            m.wait_until_finished()
    num_steps = config.train.num_train_steps
    scores, samples = evaluator(state.ema_params, config.eval.num_samples)
    writer.write_scalars(num_steps, scores)
    grid = samples[: config.sampling.grid_size]
    path = write_samples(grid, num_steps, writer, workdir, config.data.num_classes)
    evaluator.write_final(scores, num_steps)
    manager.wait_until_finished()
    writer.flush()
    logging.info("%s", evaluator.headline(scores))
    logging.info("Samples in %s; checkpoints in %s", path, manager.directory)
    return state


def _train_loop(
    config,
    workdir,
    exp,
    state,
    data,
    managers,
    evaluator,
    writer,
    on_log=None,
    existing=frozenset(),
) -> TrainState:
    """Steps from state.step to train.num_train_steps: logging, checkpoints, EMA snapshots,
    evaluations. managers: the checkpoints' and, with post-hoc EMA, the snapshots'."""
    manager, snapshots = (managers + [None])[:2]
    num_steps = config.train.num_train_steps
    report = events.Progress(num_steps, writer)
    first = int(jax.device_get(state.step))
    bar = tqdm.tqdm(initial=first, total=num_steps, disable=not sys.stderr.isatty(), desc="train")
    history, compiled = [], None
    for step in range(first, num_steps):
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
            batch = next(data)
            if compiled is None:  # Every program of the run, compiled concurrently.
                compiled = programs.compile_programs(exp, config, state, batch, step, num_steps)
            every = config.task_gradient_cosine_every_steps
            if every and step % every == 0 and config.clustering.k > 1:
                cosine = compiled.task_gradient_cosine(state, batch)
                write_task_gradient_cosine(writer, step, cosine)
            with_task_grads = exp.method.needs_task_grads(step, config.mtl)
            state, metrics = compiled.train_step[with_task_grads](state, batch)
        if history:  # The previous step's count: waits for that step only, not this one.
            check_skips(history[-1], config, manager)
        history.append(metrics)
        done = step + 1
        report(done)
        bar.update(1)
        if done % config.log_every_steps == 0 or done == num_steps:
            check_skips(metrics, config, manager)
            scalars = _mean_metrics(history)
            writer.write_scalars(done, scalars)
            if on_log is not None:
                on_log(done, scalars)
            bar.set_postfix(loss=f"{scalars['train/loss']:.4f}")
            history = []
        if done % config.checkpoint_every_steps == 0 or done == num_steps:
            meta = {
                "data_position": vars(data.position),
                "config": config.to_dict(),
                "boundaries": exp.boundaries.tolist(),
            }
            checkpointing.save(manager, state, meta)
        if snapshots is not None and ema_snapshots.due(config, done):
            # One orbax manager's collective save at a time, in the same order on every
            # process: the checkpoint's finished first, the snapshot's before the next step.
            manager.wait_until_finished()
            ema_snapshots.save(snapshots, state, config, existing)
            snapshots.wait_until_finished()
        if done < num_steps and _every(config.eval.every_steps, done):
            scores, _ = evaluator(state.ema_params, config.eval.num_samples)
            writer.write_scalars(done, scores)
            logging.info("Step %d: %s", done, evaluator.headline(scores))
        if done < num_steps and _every(config.sample_every_steps, done):
            grid = evaluator.samples(state.ema_params, config.sampling.grid_size)
            write_samples(grid, done, writer, workdir, config.data.num_classes)
    bar.close()
    return state
