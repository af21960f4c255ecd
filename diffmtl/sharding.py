"""Device mesh and shardings for the jit-sharded trainer.

The mesh has two axes, ('data', 'fsdp'). The batch is split over both (BATCH_AXES). Parameters,
their EMA and the optimizer state are sharded over `fsdp` (state_shardings: each array along
its largest axis that the fsdp size divides; replicated when none does or fsdp = 1), so a
model that does not fit one device spreads over fsdp devices; the step gathers the weights
where it computes with them. We build `jax.sharding.Mesh` directly, whose axes are of type
Auto: the compiler propagates shardings from the inputs, and the per-example loss is written
per device with `jax.shard_map` (steps.py). `jax.make_mesh` would default to Explicit axes in
jax 0.10, under which a plain data-parallel gradient raises a sharding type error.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXES = ("data", "fsdp")


def make_mesh(data: int = -1, fsdp: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('data', 'fsdp') mesh over `devices` (default: all); data = -1 takes what fsdp leaves."""
    devices = list(jax.devices() if devices is None else devices)
    if data == -1:
        data = len(devices) // fsdp
    if data * fsdp != len(devices):
        raise ValueError(f"mesh {data} x {fsdp} does not match {len(devices)} devices")
    return Mesh(np.asarray(devices).reshape(data, fsdp), BATCH_AXES)


def num_batch_shards(mesh: Mesh) -> int:
    """How many ways the batch is split."""
    return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def fsdp_spec(shape: tuple[int, ...], fsdp: int) -> PartitionSpec:
    """Splits the largest axis of `shape` that `fsdp` divides over 'fsdp' (ties: the last)."""
    if fsdp == 1:
        return PartitionSpec()
    axes = [i for i, d in enumerate(shape) if d % fsdp == 0 and d >= fsdp]
    if not axes:
        return PartitionSpec()
    axis = max(axes, key=lambda i: (shape[i], i))
    return PartitionSpec(*([None] * axis), "fsdp")


def state_shardings(abstract_state, mesh: Mesh):
    """NamedShardings for a TrainState-like tree of arrays / ShapeDtypeStructs (see module doc)."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, fsdp)), abstract_state)


def batch_spec(batch_axis: int) -> PartitionSpec:
    """Spec that splits axis `batch_axis` over BATCH_AXES and keeps the axes before it whole."""
    return PartitionSpec(*([None] * batch_axis), BATCH_AXES)


def batch_sharding(mesh: Mesh, batch_axis: int) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(batch_axis))


def to_host(tree):
    """NumPy copies of a tree of arrays, also when they span other processes' devices.

    Replicated and process-local arrays are read locally; arrays sharded over several processes
    are gathered from all of them (every process must call this, as with any collective).
    """

    def fetch(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(fetch, tree)
