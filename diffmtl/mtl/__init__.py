"""MTL methods over timestep clusters: one record (base.Method) per method, one file each.

Every method is an optax GradientTransformationExtraArgs placed first in the optimizer chain:
`update(updates, state, params, *, task_losses)` takes per-cluster gradients [k, ...] or the
param-shaped gradient of sum_i w_i L_i (w = `loss_weights(state)`) and returns param-shaped
updates. Gram-based methods ('gram': PCGrad, Nash-MTL, MGDA, CAGrad, IMTL-G, Aligned-MTL,
UPGrad, DualProj, ConFIG) are functions from the k x k Gram matrix to k weights on one shared
path (base.gram_weighting); loss-based ones ('loss': equal, fixed, UW, FAMO, DWA, RLW, and
continuous UW, which weights each example by its log-SNR) reweight the losses of one backward
pass. A
method's options live in config.mtl.<name> (default_config()).
"""

from __future__ import annotations

import ml_collections

from diffmtl.errors import require
from diffmtl.mtl import (
    aligned_mtl,
    base,
    cagrad,
    config_method,
    continuous_uw,
    dualproj,
    dwa,
    equal,
    famo,
    fixed,
    imtl_g,
    mgda,
    nash,
    pcgrad,
    rlw,
    uncertainty,
    upgrad,
)
from diffmtl.mtl.base import Method
from diffmtl.mtl.equal import equal_weighting
from diffmtl.mtl.nash import nash_mtl
from diffmtl.mtl.pcgrad import pcgrad as pcgrad_transform
from diffmtl.mtl.uncertainty import uncertainty_weighting

_MODULES = (
    equal, fixed, uncertainty, continuous_uw, famo, dwa, rlw,
    pcgrad, nash, mgda, cagrad, imtl_g, aligned_mtl, upgrad, dualproj, config_method,
)  # fmt: skip
METHODS: dict[str, Method] = {m.METHOD.name: m.METHOD for m in _MODULES}

__all__ = [
    "METHODS",
    "Method",
    "base",
    "default_config",
    "equal_weighting",
    "method",
    "nash_mtl",
    "pcgrad_transform",
    "uncertainty_weighting",
]


def method(name: str) -> Method:
    """The record of MTL method `name` (a key of METHODS)."""
    if name not in METHODS:
        raise ValueError(f"unknown mtl.method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


def default_config() -> ml_collections.ConfigDict:
    """config.mtl: the method, the per-cluster gradients' dtype, and one section of options per
    method that has any (config.mtl.<name>.<option>), every field with its default."""
    config = ml_collections.ConfigDict()
    config.method = "equal"
    config.grad_dtype = "float32"
    # Loss-based methods: divide the weights by their sum, keeping the method's ratios and
    # removing its common scale (AdamW follows a changing scale): the scale-vs-method diagnostic.
    config.normalize_weights = False
    for name, record in METHODS.items():
        if record.options:
            config[name] = ml_collections.ConfigDict(dict(record.options))
    return config


def check_config(mtl_config) -> None:
    """UserError naming the first option of any method's section that is out of range (the
    unselected methods' too: a later switch must not fail late)."""
    for name, record in METHODS.items():
        for field, ok, allowed in record.checks:
            value = mtl_config[name][field]
            require(ok(value), f"mtl.{name}.{field}={value!r} must be {allowed}")
