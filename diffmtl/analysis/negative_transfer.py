"""`python main.py --mode=ntg --config=... --workdir=...`: the negative transfer gap
(docs/method.md, docs/analysis.md).

Our protocol (the paper does not publish its own):
  1. Split 0..T-1 into analysis.ntg_num_intervals equal intervals I_1..I_m.
  2. Train the all-task model: the config as given, in <workdir>/all_tasks.
  3. Train one specialist per interval from scratch, in <workdir>/specialist_<i>: the same config
     (same seed, so the same initialisation and data order; the same step budget and batch
     layout) with clustering.timestep_range = I_i, so every timestep it draws lies in I_i
     (split uniformly into clustering.k clusters, equal weighting per the config's MTL method).
  4. Sample analysis.ntg_num_samples images with DDIM (eta 0, analysis.ntg_sampling_steps
     steps) from the all-task EMA model, and, for each i, from the composite that uses
     specialist i's EMA parameters at the reverse steps whose t lies in I_i and the all-task
     model elsewhere. Every sampler draws the same initial noise (sampling.seed), so the FIDs
     are paired.
  5. NTG_i = FID(composite i) - FID(all-task); NTG_i < 0: the specialist serves its interval
     better than the shared model, i.e. negative transfer on I_i.
Outputs: <workdir>/ntg.json (FID, precision, recall per sampler, NTG per interval) and ntg.png.
Each stage is resumable: finished runs and evaluated samplers are skipped on a restart.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath

from diffmtl.analysis import plots
from diffmtl.clustering import intervals
from diffmtl.diffusion import guidance
from diffmtl.evaluation import evaluator as evaluation
from diffmtl.training import loop, resume


def interval_configs(config, workdir: str) -> dict[str, tuple[object, str]]:
    """name -> (config, run directory) of the all-task run and of every specialist."""
    num_timesteps = config.diffusion.num_timesteps
    specialist_intervals = intervals.uniform_boundaries(
        num_timesteps, config.analysis.ntg_num_intervals
    )
    runs = {"all_tasks": (config, os.path.join(workdir, "all_tasks"))}
    reference = evaluation.reference_path(config, runs["all_tasks"][1])
    for i, (first, last) in enumerate(specialist_intervals):
        specialist = config.copy_and_resolve_references()
        with specialist.unlocked():
            specialist.clustering.method = "uniform"
            specialist.clustering.timestep_range = (int(first), int(last))
            # Its own FID is not part of the NTG: a small final evaluation, shared reference.
            specialist.eval.num_samples = config.sampling.batch_size
            specialist.eval.reference_path = reference
        runs[f"specialist_{i}"] = (specialist, os.path.join(workdir, f"specialist_{i}"))
    return runs


def _finished(run_dir: str) -> bool:
    return (epath.Path(run_dir) / "metrics.json").exists()


def composite_model_fn(apply: guidance.ModelFn) -> guidance.ModelFn:
    """model_fn((all-task params, specialist params, [first, last]), x, t, y): apply with the
    specialist's params where t lies in [first, last], the all-task model's elsewhere (t is one
    timestep per reverse step, so one forward pass with the selected parameters). apply is the
    run's (guided) model fn, so a class-conditional NTG samples as its runs' evaluation does."""

    def model_fn(params, x, t, y=None):
        shared, specialist, interval = params
        inside = (t[0] >= interval[0]) & (t[0] <= interval[1])
        chosen = jax.tree.map(lambda s, a: jnp.where(inside, s, a), specialist, shared)
        return apply(chosen, x, t, y)

    return model_fn


def _ntg_sampling_config(config):
    ntg = config.copy_and_resolve_references()
    with ntg.unlocked():
        ntg.sampling.method, ntg.sampling.eta = "ddim", 0.0
        ntg.sampling.num_steps = config.analysis.ntg_sampling_steps
        ntg.eval.num_samples = config.analysis.ntg_num_samples
    return ntg


def negative_transfer_gap(config, workdir: str) -> str:
    """Trains what is missing, evaluates what is missing, writes ntg.json and ntg.png."""
    runs = interval_configs(config, workdir)
    for name, (run_config, run_dir) in runs.items():
        if not _finished(run_dir):
            logging.info("NTG: training %s in %s", name, run_dir)
            loop.train_and_evaluate(run_config, run_dir)
    ntg_config = _ntg_sampling_config(config)
    exp, shared, _ = resume.restore_ema_params(config, runs["all_tasks"][1])
    evaluator = evaluation.Evaluator(ntg_config, exp, runs["all_tasks"][1])
    composite = evaluation.experiment_sampler(
        ntg_config, exp, composite_model_fn(evaluation.experiment_model_fn(ntg_config, exp))
    )
    path = epath.Path(workdir) / "ntg.json"
    record = json.loads(path.read_text()) if path.exists() else {"samplers": {}}
    for name, (run_config, run_dir) in runs.items():
        if name in record["samplers"]:
            continue
        if name == "all_tasks":
            samples = evaluator.samples(shared, ntg_config.eval.num_samples)
        else:
            _, specialist, _ = resume.restore_ema_params(run_config, run_dir)
            interval = jnp.asarray(run_config.clustering.timestep_range, jnp.int32)
            params = (shared, specialist, interval)
            samples = evaluation.generate_samples(
                composite, params, ntg_config.eval.num_samples, ntg_config.sampling, exp.codec
            )
        record["samplers"][name] = evaluator.quality(samples)
        logging.info("NTG: %s %s", name, record["samplers"][name])
        if jax.process_index() == 0:
            path.write_text(json.dumps(record, indent=2))
    return write_gaps(config, workdir, runs, record)


def write_gaps(config, workdir: str, runs: dict, record: dict) -> str:
    """Adds the NTG per interval to ntg.json, draws ntg.png; returns a one-line summary."""
    fids = {name: quality["fid"] for name, quality in record["samplers"].items()}
    intervals = [runs[name][0].clustering.timestep_range for name in runs if name != "all_tasks"]
    gaps = [fids[name] - fids["all_tasks"] for name in runs if name != "all_tasks"]
    record["intervals"] = [list(map(int, interval)) for interval in intervals]
    record["negative_transfer_gap"] = gaps
    record["protocol"] = {
        "num_samples": config.analysis.ntg_num_samples,
        "sampler": f"ddim-{config.analysis.ntg_sampling_steps}",
        "num_train_steps": config.train.num_train_steps,
    }
    if jax.process_index() == 0:
        (epath.Path(workdir) / "ntg.json").write_text(json.dumps(record, indent=2))
        title = (
            f"NTG, {config.analysis.ntg_num_samples} samples, "
            f"{config.train.num_train_steps} steps each"
        )
        plots.plot_negative_transfer_gap(
            os.path.join(workdir, "ntg.png"), np.array(intervals), np.array(gaps), title
        )
    shown = ", ".join(f"[{a}, {b}] {g:+.2f}" for (a, b), g in zip(intervals, gaps, strict=True))
    return f"FID all-task {fids['all_tasks']:.2f}; NTG per interval: {shown} ({workdir}/ntg.json)"
