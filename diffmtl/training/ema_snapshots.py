"""Snapshots of the post-hoc EMA profiles on disk, and parameters reconstructed from them.

Layout: <workdir>/ema_snapshots/<step>/{profiles, meta}, written by orbax like the checkpoints
(to a temporary directory, renamed when complete: an interrupted save never corrupts an earlier
snapshot) and never deleted. A snapshot holds the train.ema_profiles trees at that step (each
the size of the parameters) and, as JSON, the step and the profiles' sigma_rel and gamma.
`params_at` combines the snapshots up to a step into the profile of any sigma_rel
(post_hoc_ema.solve_weights), loading them one at a time.
"""

from __future__ import annotations

import jax
import numpy as np
import orbax.checkpoint as ocp

from diffmtl.errors import UserError
from diffmtl.training import checkpointing, post_hoc_ema

FOLDER = "ema_snapshots"


def make_manager(workdir: str) -> ocp.CheckpointManager:
    """A manager over <workdir>/ema_snapshots that keeps every snapshot."""
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True)
    root = checkpointing.workdir_root(workdir) / FOLDER
    return ocp.CheckpointManager(root, options=options, item_names=("profiles", "meta"))


def due(config, step: int) -> bool:
    """Whether a snapshot is saved after `step` steps (every train.ema_snapshot_every_steps, and
    the last step)."""
    every = config.train.ema_snapshot_every_steps
    last = config.train.num_train_steps
    return bool(config.train.ema_profiles) and (step == last or (every > 0 and step % every == 0))


def save(manager: ocp.CheckpointManager, state, config, existing: frozenset = frozenset()) -> None:
    """Saves the state's profiles at its step (asynchronously). A step of `existing` (the steps
    on disk when the run started, read once by every process) is kept: a resumed run
    recomputes the same profiles there. Reading the disk here instead would let processes of a
    multi-host run decide differently (one sees another's finished save) and deadlock orbax's
    collective save."""
    step = int(jax.device_get(state.step))
    if step in existing:
        return
    sigma_rels = [float(s) for s in config.train.ema_profiles]
    meta = {
        "step": step,
        "sigma_rels": sigma_rels,
        "gammas": [post_hoc_ema.sigma_rel_to_gamma(s) for s in sigma_rels],
    }
    args = ocp.args.Composite(
        profiles=ocp.args.StandardSave(state.ema_profiles), meta=ocp.args.JsonSave(meta)
    )
    manager.save(step, args=args, force=True)


def params_at(workdir: str, like_params, step: int, sigma_rel: float):
    """The parameters of the post-hoc EMA of length `sigma_rel` at `step`, from the snapshots
    of steps <= step (host NumPy trees shaped like `like_params`). UserError when there are none."""
    manager = make_manager(workdir)
    steps = [s for s in manager.all_steps() if s <= step]
    if not steps:
        raise UserError(
            f"no EMA snapshots up to step {step} in {workdir}/{FOLDER}: train with "
            "train.ema_profiles set (the default) to use eval.ema_sigma_rel"
        )
    metas = {s: manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
             for s in steps}  # fmt: skip
    entries = [(s, i, g) for s in steps for i, g in enumerate(metas[s]["gammas"])]
    weights = post_hoc_ema.solve_weights(
        [(s, g) for s, _, g in entries], (step, post_hoc_ema.sigma_rel_to_gamma(sigma_rel))
    )
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_params)
    current = {}  # the snapshot last read: its profiles are consecutive entries, read once

    def load(n):
        s, i, _ = entries[n]
        if s not in current:
            profiles = tuple(abstract for _ in metas[s]["gammas"])
            args = ocp.args.Composite(profiles=ocp.args.StandardRestore(profiles))
            current.clear()
            current[s] = jax.device_get(manager.restore(s, args=args).profiles)
        return current[s][i]

    return jax.tree.map(np.asarray, post_hoc_ema.reconstruct(load, weights))
