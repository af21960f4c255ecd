"""train_and_evaluate(config, workdir): the training loop, its cadence, logging and checkpoints.

Order of work: validate the config and find the data (cheap, so bad input fails before any
compile), build the mesh, clusters, model and optimizer, restore the newest checkpoint if any,
then train. Each step picks the compiled step with or without per-cluster gradients from the
MTL method's host-side `needs_task_grads(step)`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NamedTuple

import jax
import numpy as np
import optax
import tqdm
from absl import logging
from clu import metric_writers, periodic_actions
from flax import linen as nn
from jax.sharding import Mesh

from diffmtl import (
    checkpointing,
    config_validation,
    datasets,
    evaluate,
    images,
    input_pipeline,
    mtl,
    resume,
    run_info,
    sharding,
    steps,
)
from diffmtl import diffusion as diffusion_lib
from diffmtl.clustering import from_config
from diffmtl.diffusion import Diffusion, make_diffusion
from diffmtl.errors import UserError
from diffmtl.models.unet import make_model
from diffmtl.optimizer import make_optimizer
from diffmtl.train_state import TrainState, create_train_state


def batch_layout(config) -> tuple[int, int, int]:
    """(M, k, N) with B = M k N."""
    m, k = config.train.num_microbatches, config.clustering.k
    return m, k, config.train.batch_size // (m * k)


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


def write_samples(samples: np.ndarray, step: int, writer, workdir: str) -> str:
    """Logs a grid of uint8 samples [n, H, W, C] and writes it to <workdir>/samples.png."""
    grid = images.image_grid(samples)
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


class Experiment(NamedTuple):
    """Everything built from a config before training starts."""

    source: datasets.ImageSource | None  # None when built without data (dry runs).
    image_shape: tuple[int, int, int]  # (H, W, C)
    state_initializer: Callable[[jax.Array], TrainState]  # key -> fresh TrainState
    state_sharding: TrainState  # NamedSharding per leaf (sharding.state_shardings)
    mesh: Mesh
    layout: tuple[int, int, int]  # (M, k, N)
    model: nn.Module
    diffusion: Diffusion
    tx: optax.GradientTransformationExtraArgs
    method: ModuleType  # The MTL method's module (diffmtl.mtl.METHODS).
    boundaries: np.ndarray  # [k, 2] int32 cluster intervals.
    train_step: dict[bool, Callable]  # with_task_grads -> jitted step(state, images).
    task_gradient_cosine: Callable  # jitted (state, images) -> [k, k] cosines.


def build_experiment(
    config, devices: Sequence[jax.Device] | None = None, with_data: bool = True
) -> Experiment:
    """Validates `config` and finds the data (cheap, before any compile), then builds the rest.

    `devices` (default: all) are the mesh's devices. Without data (dry runs) the image shape
    comes from data.image_size and data.channels alone.
    """
    devices = list(jax.devices() if devices is None else devices)
    config_validation.validate(config, len(devices), check_files=with_data)
    source = datasets.make_source(config) if with_data else None
    image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
    boundaries = from_config.cluster_boundaries(config)
    log_snr = diffusion_lib.log_snr(diffusion_lib.schedule_alphas_cumprod(config))
    logging.info(
        "Clusters (%s):\n%s",
        config.clustering.method,
        from_config.boundaries_table(boundaries, log_snr),
    )
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, devices)
    model = make_model(config, image_shape[-1])
    diffusion = make_diffusion(config)
    tx = make_optimizer(config, config.clustering.k)
    method = mtl.method(config.mtl.method)
    init = functools.partial(
        create_train_state, model, tx, image_shape=image_shape, boundaries=boundaries
    )
    state_sharding = sharding.state_shardings(jax.eval_shape(init, jax.random.PRNGKey(0)), mesh)
    train_step = {
        flag: steps.make_train_step(
            config, model, diffusion, tx, method, mesh, flag, state_sharding=state_sharding
        )
        for flag in (False, True)
    }
    cosine = steps.make_task_gradient_cosine(config, model, diffusion, mesh)
    layout = batch_layout(config)
    return Experiment(
        source,
        image_shape,
        init,
        state_sharding,
        mesh,
        layout,
        model,
        diffusion,
        tx,
        method,
        boundaries,
        train_step,
        cosine,
    )


def initial_state(config, experiment: Experiment) -> TrainState:
    """A fresh TrainState from config.seed with the clusters of config.clustering, sharded."""
    init = jax.jit(experiment.state_initializer, out_shardings=experiment.state_sharding)
    return init(jax.random.PRNGKey(config.seed))


def checkpoint_restorer(
    config, exp: Experiment, manager, workdir: str
) -> Callable[[int | None], tuple[TrainState, dict]] | None:
    """restore(step=None) -> (state, meta) of `workdir`'s checkpoint `step` (default: the
    newest); None if there is none. The config check and the restore template are done once, so
    restoring many steps (TAS, the sweep's evaluations) builds one initial state.

    A checkpoint whose config differs in a locked field (resume.LOCKED), of another state
    layout, or with other cluster boundaries is refused in one line (UserError).
    """
    meta = checkpointing.latest_meta(manager)
    if meta is None:
        return None
    resume.check_compatible(meta["config"], config.to_dict(), workdir)
    template = initial_state(config, exp)

    def restore(step: int | None = None) -> tuple[TrainState, dict]:
        try:
            restored = checkpointing.restore(manager, template, step)
        except (ValueError, KeyError, TypeError) as e:  # what orbax raises for another tree
            raise UserError(
                f"the checkpoint in {workdir} does not match this version's training state "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}): resume with the code "
                "that wrote it or use a new workdir"
            ) from e
        from_config.check_resumed_boundaries(restored[0].boundaries, exp.boundaries, workdir)
        return restored

    return restore


def restore_or_initialise(
    config, exp: Experiment, manager, workdir: str
) -> tuple[TrainState, input_pipeline.DataPosition | None]:
    """The newest checkpoint's state and data position (checkpoint_restorer), or a fresh state
    and None."""
    restore = checkpoint_restorer(config, exp, manager, workdir)
    if restore is None:
        return initial_state(config, exp), None
    state, meta = restore()
    position = input_pipeline.DataPosition(**meta["data_position"])
    logging.info("Resumed from step %d at data position %s", int(state.step), position)
    return state, position


def train_and_evaluate(config, workdir: str) -> TrainState:
    """Trains `config` in `workdir`, resuming from its newest checkpoint; returns the last state."""
    exp = build_experiment(config)
    manager = checkpointing.make_manager(workdir, config.keep_checkpoints)
    state, position = restore_or_initialise(config, exp, manager, workdir)
    run_info.write_run_info(workdir, config, exp.boundaries)
    evaluator = evaluate.Evaluator(config, exp, workdir)

    data = input_pipeline.GlobalBatchIterator(
        exp.source,
        config.seed,
        exp.layout,
        exp.mesh,
        position or input_pipeline.DataPosition(),
        config.data.random_flip,
    )
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    try:
        state = _train_loop(config, workdir, exp, state, data, manager, evaluator, writer)
    finally:  # A stop (bad image, non-finite run) still lets an in-flight save complete.
        manager.wait_until_finished()
    num_steps = config.train.num_train_steps
    scores, samples = evaluator(state.ema_params, config.eval.num_samples)
    writer.write_scalars(num_steps, scores)
    path = write_samples(samples[: config.sampling.grid_size], num_steps, writer, workdir)
    evaluator.write_final(scores, num_steps)
    manager.wait_until_finished()
    writer.flush()
    logging.info("%s", evaluator.headline(scores))
    logging.info("Samples in %s; checkpoints in %s", path, manager.directory)
    return state


def _train_loop(config, workdir, exp, state, data, manager, evaluator, writer) -> TrainState:
    """Steps from state.step to train.num_train_steps: logging, checkpoints, evaluations."""
    num_steps = config.train.num_train_steps
    report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
    first = int(jax.device_get(state.step))
    bar = tqdm.tqdm(initial=first, total=num_steps, disable=not sys.stderr.isatty(), desc="train")
    history = []
    for step in range(first, num_steps):
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
            batch = next(data)
            every = config.task_gradient_cosine_every_steps
            if every and step % every == 0 and config.clustering.k > 1:
                write_task_gradient_cosine(writer, step, exp.task_gradient_cosine(state, batch))
            with_task_grads = exp.method.needs_task_grads(step, config.mtl)
            state, metrics = exp.train_step[with_task_grads](state, batch)
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
            bar.set_postfix(loss=f"{scalars['train/loss']:.4f}")
            history = []
        if done % config.checkpoint_every_steps == 0 or done == num_steps:
            meta = {
                "data_position": vars(data.position),
                "config": config.to_dict(),
                "boundaries": exp.boundaries.tolist(),
            }
            checkpointing.save(manager, state, meta)
        if done < num_steps and _every(config.eval.every_steps, done):
            scores, _ = evaluator(state.ema_params, config.eval.num_samples)
            writer.write_scalars(done, scores)
            logging.info("Step %d: %s", done, evaluator.headline(scores))
        if done < num_steps and _every(config.sample_every_steps, done):
            grid = evaluator.samples(state.ema_params, config.sampling.grid_size)
            write_samples(grid, done, writer, workdir)
    bar.close()
    return state
