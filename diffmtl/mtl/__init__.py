"""Multi-task gradient aggregators in JAX: 16 methods as optax transforms, and their weightings.

Contract (the same for every method):
- **Constructor.** `diffmtl.mtl.<name>(num_tasks, **options)` returns an
  `optax.GradientTransformationExtraArgs`, placed first in an optimizer chain (e.g.
  `optax.chain(mtl.upgrad(3), optax.adam(1e-3))`). Its keyword options are the fields of the
  method's `Options` dataclass (`mtl.method(name).options`): default, range and meaning are
  written there once and read by the constructor, `default_config()`, the config check and
  the docs. Out-of-range options raise ValueError, unknown ones TypeError.
- **Input.** `update(updates, state, params, *, task_losses)`: `updates` is either the
  per-task gradients (every leaf [k, *param.shape]) or one param-shaped gradient of
  sum_i w_i L_i with w = `mtl.method(name).loss_weights(state)`; the two are told apart by
  shape against `params` (so `params` is required). `task_losses` [k] is the per-task losses
  (loss-based methods learn from them; Gram-based ones ignore them).
- **Output.** Param-shaped updates, sum_i w_i g_i for the method's weights w [k].
- **Scale.** Every method has the scale of the mean gradient: on k equal orthogonal
  gradients, w = 1/k (the loss is the mean of the task losses, so equal weighting is 1/k).
  Where a paper sums over tasks (Aligned-MTL, ConFIG, PCGrad, Nash-MTL) we divide by k;
  CAGrad keeps its official rescale 1/(1+c^2). Nash-MTL clips its update to `max_norm`.
- **Which gradient to pass.** Gram-based methods ('gram': PCGrad, Nash-MTL, MGDA, CAGrad,
  IMTL-G, Aligned-MTL, UPGrad, DualProj, ConFIG) need the per-task gradients on the steps
  where `mtl.method(name).needs_task_grads(step, config)` is True (every step, except
  Nash-MTL, every `update_every`); on other steps they take the weighted-loss gradient with
  their last weights. Loss-based methods ('loss': equal, fixed, UW, FAMO, DWA, RLW, continuous
  UW) only ever need the weighted-loss gradient (one backward pass).
- **State.** Every transform is stateful in optax's sense: its state holds the last weights
  (and a PRNG key, Adam moments or Nash-MTL's alpha). It is a pytree: jit, shard and
  checkpoint it with the optimizer's.
- **Weightings.** Each Gram-based method's weights are also a pure function
  `mtl.<name>_weights(gram [k, k], task_losses [k] = None, **options) -> [k]` of the Gram
  matrix G[i, j] = <g_i, g_j> (torchjd's "weighting"), usable without optax.
- **Guarantees.** `mtl.method(name).guarantee` states what each method guarantees (e.g.
  "non-conflicting": <update, g_j> >= 0 for every j); tests hold each to it.

In diffmtl the tasks are timestep clusters (docs/mtl.md); nothing here knows about diffusion.
"""

from __future__ import annotations

import ml_collections

from diffmtl.errors import UserError
from diffmtl.mtl import base
from diffmtl.mtl.base import Method, Options
from diffmtl.mtl.methods import aligned_mtl as _aligned_mtl
from diffmtl.mtl.methods import cagrad as _cagrad
from diffmtl.mtl.methods import config_method as _config
from diffmtl.mtl.methods import continuous_uw as _continuous_uw
from diffmtl.mtl.methods import dualproj as _dualproj
from diffmtl.mtl.methods import dwa as _dwa
from diffmtl.mtl.methods import equal as _equal
from diffmtl.mtl.methods import famo as _famo
from diffmtl.mtl.methods import fixed as _fixed
from diffmtl.mtl.methods import imtl_g as _imtl_g
from diffmtl.mtl.methods import mgda as _mgda
from diffmtl.mtl.methods import nash as _nash
from diffmtl.mtl.methods import pcgrad as _pcgrad
from diffmtl.mtl.methods import rlw as _rlw
from diffmtl.mtl.methods import uncertainty as _uncertainty
from diffmtl.mtl.methods import upgrad as _upgrad

_MODULES = (
    _equal, _fixed, _uncertainty, _continuous_uw, _famo, _dwa, _rlw,
    _pcgrad, _nash, _mgda, _cagrad, _imtl_g, _aligned_mtl, _upgrad, _dualproj, _config,
)  # fmt: skip
METHODS: dict[str, Method] = {m.METHOD.name: m.METHOD for m in _MODULES}

# The constructors, name(num_tasks, **options) -> optax.GradientTransformationExtraArgs.
equal = _equal.equal
fixed = _fixed.fixed
uw = _uncertainty.uw
continuous_uw = _continuous_uw.continuous_uw
famo = _famo.famo
dwa = _dwa.dwa
rlw = _rlw.rlw
pcgrad = _pcgrad.pcgrad
nash_mtl = _nash.nash_mtl
mgda = _mgda.mgda
cagrad = _cagrad.cagrad
imtl_g = _imtl_g.imtl_g
aligned_mtl = _aligned_mtl.aligned_mtl
upgrad = _upgrad.upgrad
dualproj = _dualproj.dualproj
config = _config.config

# The pure weightings of the Gram-based methods, (gram [k, k], task_losses [k], **options) -> [k].
pcgrad_weights = _pcgrad.pcgrad_weights
nash_mtl_weights = _nash.nash_mtl_weights
mgda_weights = _mgda.mgda_weights
cagrad_weights = _cagrad.cagrad_weights
imtl_g_weights = _imtl_g.imtl_g_weights
aligned_mtl_weights = _aligned_mtl.aligned_mtl_weights
upgrad_weights = _upgrad.upgrad_weights
dualproj_weights = _dualproj.dualproj_weights
config_weights = _config.config_weights

gram_matrix = base.gram_matrix

__all__ = [
    "METHODS", "Method", "Options", "default_config", "check_config", "method", "gram_matrix",
    "equal", "fixed", "uw", "continuous_uw", "famo", "dwa", "rlw", "pcgrad", "nash_mtl", "mgda",
    "cagrad", "imtl_g", "aligned_mtl", "upgrad", "dualproj", "config",
    "pcgrad_weights", "nash_mtl_weights", "mgda_weights", "cagrad_weights", "imtl_g_weights",
    "aligned_mtl_weights", "upgrad_weights", "dualproj_weights", "config_weights",
]  # fmt: skip


def method(name: str) -> Method:
    """The record of MTL method `name` (a key of METHODS); ValueError naming the choices."""
    if name not in METHODS:
        raise ValueError(f"unknown mtl.method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


def default_config() -> ml_collections.ConfigDict:
    """config.mtl: the method, the per-cluster gradients' dtype, and one section of options per
    method that has any (config.mtl.<name>.<option>), every field with its default (read from
    the method's Options dataclass)."""
    cfg = ml_collections.ConfigDict()
    cfg.method = "equal"
    cfg.grad_dtype = "float32"
    # Loss-based methods: divide the weights by their sum, keeping the method's ratios and
    # removing its common scale (AdamW follows a changing scale): the scale-vs-method diagnostic.
    cfg.normalize_weights = False
    for name, record in METHODS.items():
        if base.option_fields(record.options):
            cfg[name] = ml_collections.ConfigDict(base.defaults(record.options))
    return cfg


def check_config(mtl_config) -> None:
    """UserError naming the first option of any method's section that is out of range (the
    unselected methods' too: a later switch must not fail late)."""
    for name, record in METHODS.items():
        try:
            record.parse(mtl_config)
        except ValueError as error:
            raise UserError(f"mtl.{name}.{error}") from None
