"""Resuming a run: the two guards (the config's locked fields, the cluster boundaries) and the
restore of a workdir's checkpoints.

The checkpoint stores the config it was trained with. Fields that change the model's shape, the
diffusion process, the clusters, the MTL method or the example stream make the saved state
meaningless for the new config, so resuming is refused, naming them; everything else (logging,
checkpoint and evaluation cadence, the number of steps, sampling and evaluation settings, the
learning rate, the micro-batch count, the device mesh) may change between runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import jax
import numpy as np
from absl import logging
from flax import traverse_util

from diffmtl.data import pipeline
from diffmtl.errors import UserError
from diffmtl.training import checkpointing
from diffmtl.training.experiment import Experiment, build_experiment, initial_state
from diffmtl.training.train_state import TrainState

# Config fields (or whole sections) a resumed run must keep.
LOCKED = (
    "seed",
    "data.name",
    "data.split",
    "data.tfds_name",
    "data.image_size",
    "data.channels",
    "data.random_flip",
    "data.pixel_source",
    "autoencoder.base_channels",
    "autoencoder.channel_mults",
    "autoencoder.num_res_blocks",
    "autoencoder.latent_channels",
    "autoencoder.num_groups",
    "autoencoder.input_size",
    "autoencoder.scale_factor",
    "autoencoder.sample_posterior",
    "diffusion",
    "clustering.method",
    "clustering.k",
    "clustering.timestep_range",
    "clustering.width_weighting",
    "mtl",
    "model",
    "train.batch_size",
    "train.ema_profiles",  # the state's layout
)


def _flat(config_dict: dict) -> dict[str, object]:
    """'a.b' -> value, with tuples as lists (the JSON the checkpoint holds)."""
    plain = json.loads(json.dumps(config_dict))
    return {".".join(k): v for k, v in traverse_util.flatten_dict(plain).items()}


def _locked(field: str) -> bool:
    return any(field == name or field.startswith(name + ".") for name in LOCKED)


def changed_locked_fields(saved: dict, current: dict) -> list[str]:
    """Locked fields whose values differ between two config dicts (fields in both)."""
    old, new = _flat(saved), _flat(current)
    return sorted(f for f in old.keys() & new.keys() if _locked(f) and old[f] != new[f])


def check_compatible(saved: dict, current: dict, workdir: str) -> None:
    """UserError naming every locked field that `current` changes from the checkpoint's config."""
    fields = changed_locked_fields(saved, current)
    if fields:
        old, new = _flat(saved), _flat(current)
        changes = ", ".join(f"{f}: {old[f]!r} -> {new[f]!r}" for f in fields)
        raise UserError(
            f"cannot resume {workdir} with this config: {changes}; restore these fields "
            "(the checkpoint's config.json) or use a new workdir"
        )


def check_resumed_boundaries(restored: np.ndarray, configured: np.ndarray, workdir: str) -> None:
    """Refuses to resume a run whose checkpoint holds other clusters than the config gives."""
    restored, configured = np.asarray(restored), np.asarray(configured)
    if restored.shape != configured.shape or np.any(restored != configured):
        raise UserError(
            f"the checkpoint in {workdir} was trained with clusters {restored.tolist()} but the "
            f"config gives {configured.tolist()}: restore the original clustering settings "
            "(clustering.method, k, tas_path, diffusion schedule) or use a new workdir"
        )


def checkpoint_restorer(
    config, exp: Experiment, manager, workdir: str
) -> Callable[[int | None], tuple[TrainState, dict]] | None:
    """restore(step=None) -> (state, meta) of `workdir`'s checkpoint `step` (default: the
    newest); None if there is none. The config check and the restore template are done once, so
    restoring many steps (TAS, the sweep's evaluations) builds one initial state.

    A checkpoint whose config differs in a locked field (resume.LOCKED), of another state
    layout, or with other cluster boundaries is refused in one line (UserError).
    """
    chosen = _chosen_step(config, manager, workdir)
    if chosen is None:
        return None
    try:
        meta = checkpointing.latest_meta(manager, chosen)
    except checkpointing.RESTORE_ERRORS as e:
        raise _damaged(manager, workdir, chosen, e) from e
    check_compatible(meta["config"], config.to_dict(), workdir)
    template = initial_state(config, exp)

    def restore(step: int | None = None) -> tuple[TrainState, dict]:
        step = chosen if step is None else step
        try:
            restored = checkpointing.restore(manager, template, step)
        except checkpointing.RESTORE_ERRORS as e:
            raise _damaged(manager, workdir, step, e) from e
        check_resumed_boundaries(restored[0].boundaries, exp.boundaries, workdir)
        return restored

    return restore


def _chosen_step(config, manager, workdir: str) -> int | None:
    """config.restore_step if set (UserError unless that checkpoint exists), else the newest."""
    steps = list(manager.all_steps())
    if not config.restore_step:
        return max(steps) if steps else None
    if config.restore_step not in steps:
        raise UserError(
            f"restore_step={config.restore_step}: {workdir} has no such checkpoint (it has "
            f"{sorted(steps)}); set --config.restore_step to one of them or 0 (the newest)"
        )
    return config.restore_step


def _damaged(manager, workdir: str, step: int, error: Exception) -> UserError:
    """The one line for a checkpoint that cannot be restored: which step, why, and the ways
    out (an older step, or moving it away); nothing is deleted or overwritten."""
    older = [s for s in manager.all_steps() if s < step]
    way_out = (
        f"resume from step {max(older)} with --config.restore_step={max(older)}"
        if older
        else "use a new workdir"
    )
    reason = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}" if str(error) else ""
    return UserError(
        f"checkpoint step {step} in {workdir}/checkpoints cannot be restored: damaged, "
        f"incomplete or written by another version ({reason}); {way_out}, or move "
        f"{workdir}/checkpoints/{step} away"
    )


def restore_or_initialise(
    config, exp: Experiment, manager, workdir: str
) -> tuple[TrainState, pipeline.DataPosition | None]:
    """The newest checkpoint's state and data position (checkpoint_restorer), or a fresh state
    and None."""
    restore = checkpoint_restorer(config, exp, manager, workdir)
    if restore is None:
        return initial_state(config, exp), None
    state, meta = restore()
    position = pipeline.DataPosition(**meta["data_position"])
    logging.info("Resumed from step %d at data position %s", int(state.step), position)
    return state, position


def restore_ema_params(config, workdir: str):
    """(experiment, EMA params, step) of the newest checkpoint in `workdir`; UserError if none."""
    exp = build_experiment(config)
    manager = checkpointing.make_manager(workdir, config.keep_checkpoints)
    if manager.latest_step() is None:
        raise UserError(f"no checkpoint in {workdir}: train there first (--mode=train)")
    state, _ = restore_or_initialise(config, exp, manager, workdir)
    return exp, state.ema_params, int(jax.device_get(state.step))
