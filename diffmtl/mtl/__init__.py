"""MTL methods over timestep clusters, one per file, each an optax GradientTransformationExtraArgs.

Contract (DESIGN.md): `update(updates, state, params, *, task_losses)` takes per-cluster
gradients [k, ...] or the param-shaped gradient of sum_i w_i L_i (w = `loss_weights(state)`)
and returns param-shaped updates. Each method module provides
  make(num_tasks, mtl_config) -> the transform (first link of the optimizer chain),
  loss_weights(state) -> [k],
  needs_task_grads(step, mtl_config) -> bool (host side: which compiled step to run),
  metrics(state) -> dict of scalars for TensorBoard,
and sets CLIPS_UPDATES = True if it clips its output itself (the chain then adds no clip).
"""

from __future__ import annotations

from types import ModuleType

from diffmtl.mtl import equal, nash, pcgrad, uncertainty
from diffmtl.mtl.equal import equal_weighting
from diffmtl.mtl.nash import nash_mtl
from diffmtl.mtl.pcgrad import pcgrad as pcgrad_transform
from diffmtl.mtl.uncertainty import uncertainty_weighting

METHODS: dict[str, ModuleType] = {
    "equal": equal,
    "uw": uncertainty,
    "pcgrad": pcgrad,
    "nash_mtl": nash,
}

__all__ = [
    "METHODS",
    "equal_weighting",
    "method",
    "nash_mtl",
    "pcgrad_transform",
    "uncertainty_weighting",
]


def method(name: str) -> ModuleType:
    """The module implementing MTL method `name` (a key of METHODS)."""
    if name not in METHODS:
        raise ValueError(f"unknown mtl.method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]
