"""`python main.py --mode=tas --config=... --workdir=...`: the task affinity of a run.

Averages TAS over the checkpoints analysis.tas_steps (default: every kept one) of the workdir's
run, on analysis.tas_num_images training images with fixed noise, and writes
  <workdir>/tas.npy        [T, T] float64, what clustering.method='gradient' reads (tas_path);
  <workdir>/tas_grid.npz   the grid [G] and the per-checkpoint TAS [S, G, G] before interpolation;
  <workdir>/tas.json       steps, N, G, d, seconds;
  <workdir>/tas.png        heatmaps against t and against log-SNR.
The same config runs it at any scale: images and parameters are sharded like training.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath

from diffmtl import sharding
from diffmtl.analysis import plots, sketch, task_affinity
from diffmtl.diffusion import schedule
from diffmtl.diffusion.samplers import respaced_timesteps
from diffmtl.errors import UserError
from diffmtl.evaluation.metrics.sample_quality import reference_indices
from diffmtl.training import checkpointing, experiment, resume


def affinity_inputs(config, exp: experiment.Experiment) -> tuple:
    """The N fixed training images in [-1, 1] and their noise, batch-sharded: [N, H, W, C] each,
    and their labels [N] (None for an unconditional config)."""
    cfg = config.analysis
    shards = sharding.num_batch_shards(exp.mesh)
    if cfg.tas_num_images % shards:
        raise UserError(
            f"analysis.tas_num_images={cfg.tas_num_images} must be a multiple of the {shards} "
            "data-parallel devices"
        )
    indices = reference_indices(exp.source.num_examples, cfg.tas_num_images, cfg.seed)
    if len(indices) < cfg.tas_num_images:
        raise UserError(
            f"analysis.tas_num_images={cfg.tas_num_images} but the data has {len(indices)} images"
        )
    examples = exp.source.examples(indices)
    x0 = examples["x0"]
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(cfg.seed), x0.shape), np.float32)
    spec = sharding.batch_sharding(exp.mesh, 0)
    labels = examples.get("label")
    return jax.device_put(x0, spec), jax.device_put(noise, spec), labels


def checkpoint_steps(config, manager, workdir: str) -> list[int]:
    """analysis.tas_steps, or every kept checkpoint; UserError if any is missing."""
    kept = sorted(manager.all_steps())
    wanted = sorted(config.analysis.tas_steps) or kept
    missing = sorted(set(wanted) - set(kept))
    if not wanted or missing:
        raise UserError(
            f"no checkpoint{f' {missing}' if missing else ''} in {workdir} (kept: {kept}): train "
            "there first or set analysis.tas_steps to kept steps"
        )
    return wanted


def make_affinity(config, exp: experiment.Experiment, num_params: int, labels=None):
    """affinity(params, x0, noise, grid [G]) -> TAS [G, G], projected or exact (analysis.*);
    compiled once for every checkpoint. labels: the images' classes (conditional models)."""
    cfg = config.analysis
    labels = None if labels is None else jnp.asarray(labels)
    grads = task_affinity.make_timestep_gradients(exp.model, exp.diffusion, labels)
    if cfg.tas_projection_dim:
        sketched = task_affinity.make_sketched_gradients(grads)
        count_sketch = sketch.make_count_sketch(num_params, cfg.tas_projection_dim, cfg.seed)

        def projected(params, x0, noise, grid):
            return task_affinity.projected_affinity(
                sketched, params, x0, noise, grid, count_sketch, cfg.tas_chunk_size
            )

        return projected
    block = task_affinity.make_gram_block(grads)

    def exact(params, x0, noise, grid):
        return task_affinity.exact_affinity(block, params, x0, noise, grid, cfg.tas_chunk_size)

    return exact


def task_affinity_of_workdir(config, workdir: str) -> str:
    """Computes and writes the files of the module docstring; returns a one-line summary."""
    start = time.time()
    exp = experiment.build_experiment(config)
    manager = checkpointing.make_manager(workdir, config.keep_checkpoints)
    steps = checkpoint_steps(config, manager, workdir)
    num_timesteps = config.diffusion.num_timesteps
    grid = respaced_timesteps(num_timesteps, config.analysis.tas_num_timesteps or num_timesteps)
    x0, noise, labels = affinity_inputs(config, exp)
    restore = resume.checkpoint_restorer(config, exp, manager, workdir)
    affinity = None
    per_step = []
    for step in steps:
        state, _ = restore(step)
        if affinity is None:
            num_params = sum(p.size for p in jax.tree.leaves(state.params))
            affinity = make_affinity(config, exp, num_params, labels)
        per_step.append(affinity(state.params, x0, noise, grid))
        logging.info("TAS of step %d done (%.0f s)", step, time.time() - start)
    tas = task_affinity.interpolate_to_all_timesteps(np.mean(per_step, 0), grid, num_timesteps)
    return write_outputs(config, workdir, tas, grid, np.stack(per_step), steps, start)


def write_outputs(config, workdir, tas, grid, per_step, steps, start) -> str:
    """Writes tas.npy, tas_grid.npz, tas.json and tas.png (process 0); returns a summary."""
    cfg = config.analysis
    root = epath.Path(workdir)
    record = {
        "steps": [int(s) for s in steps],
        "num_images": cfg.tas_num_images,
        "num_grid_timesteps": len(grid),
        "projection_dim": cfg.tas_projection_dim,
        "seconds": round(time.time() - start, 1),
    }
    if jax.process_index() == 0:
        with (root / "tas.npy").open("wb") as f:
            np.save(f, tas)
        with (root / "tas_grid.npz").open("wb") as f:
            np.savez(f, grid=grid, per_step=per_step)
        (root / "tas.json").write_text(json.dumps(record, indent=2))
        log_snr = schedule.log_snr(schedule.schedule_alphas_cumprod(config))
        title = f"TAS, steps {record['steps']}, N={cfg.tas_num_images}"
        plots.plot_task_affinity(os.path.join(workdir, "tas.png"), tas, log_snr, title)
    return f"TAS [{tas.shape[0]}, {tas.shape[1]}] of steps {record['steps']} in {root / 'tas.npy'}"
