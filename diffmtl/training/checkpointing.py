"""Orbax checkpoints of the TrainState plus a JSON item (data position, config, run info).

Layout: <workdir>/checkpoints/<step>/{state, meta}. Orbax writes each step to a temporary
directory and renames it when complete, so an interrupted save never replaces the latest
complete checkpoint.
"""

from __future__ import annotations

import os
import signal

import jax
import orbax.checkpoint as ocp
from etils import epath

from diffmtl.training.train_state import TrainState


def workdir_root(workdir: str) -> epath.Path:
    """`workdir` as orbax needs it: a bucket (gs://...) as given, a local path made absolute."""
    root = epath.Path(workdir)
    return root if "://" in str(workdir) else root.absolute()


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    """A manager over <workdir>/checkpoints keeping the newest `keep` steps."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(
        workdir_root(workdir) / "checkpoints",
        options=options,
        item_names=("state", "meta"),
    )


# Fault injection for tests: SIGKILL this process right after the save of this step has started.
KILL_DURING_SAVE_ENV = "DIFFMTL_TEST_KILL_DURING_SAVE"


def save(manager: ocp.CheckpointManager, state: TrainState, meta: dict) -> None:
    """Saves `state` at its step with the JSON-serialisable `meta` (asynchronously)."""
    step = int(jax.device_get(state.step))
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    manager.save(step, args=args, force=True)
    if os.environ.get(KILL_DURING_SAVE_ENV) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


# What orbax raises for a checkpoint whose files are missing, truncated or of another layout.
RESTORE_ERRORS = (ValueError, KeyError, TypeError, OSError, EOFError)


def latest_meta(manager: ocp.CheckpointManager, step: int | None = None) -> dict | None:
    """Checkpoint `step`'s JSON item (default: the newest; config, data position), without its
    state; None when there is no checkpoint."""
    step = manager.latest_step() if step is None else step
    if step is None:
        return None
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


def restore(
    manager: ocp.CheckpointManager, like: TrainState, step: int | None = None
) -> tuple[TrainState, dict] | None:
    """Checkpoint `step` (default: the newest) as (state, meta), placed like `like`; None when
    there is no checkpoint."""
    step = manager.latest_step() if step is None else step
    if step is None:
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    restored = manager.restore(step, args=args)
    return restored.state, restored.meta
