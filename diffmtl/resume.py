"""Resuming a run: which config changes a checkpoint accepts.

The checkpoint stores the config it was trained with. Fields that change the model's shape, the
diffusion process, the clusters, the MTL method or the example stream make the saved state
meaningless for the new config, so resuming is refused, naming them; everything else (logging,
checkpoint and evaluation cadence, the number of steps, sampling and evaluation settings, the
learning rate, the micro-batch count, the device mesh) may change between runs.
"""

from __future__ import annotations

import json

from flax import traverse_util

from diffmtl.errors import UserError

# Config fields (or whole sections) a resumed run must keep.
LOCKED = (
    "seed",
    "data.name",
    "data.split",
    "data.tfds_name",
    "data.image_size",
    "data.channels",
    "data.random_flip",
    "diffusion",
    "clustering.method",
    "clustering.k",
    "clustering.timestep_range",
    "mtl",
    "model",
    "train.batch_size",
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
