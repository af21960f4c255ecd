"""The one seam between the pipeline and the denoisers.

`MODELS[config.model.name]` builds a Linen module and checks its config against the shape of
the examples it will see; every module is called as `model(x, t, cond, *, train)` with x
[B, H, W, C] in model space, t [B] int timesteps and cond the class labels [B] int (None for an
unconditional model; label data.num_classes is the null label of classifier-free guidance). The
pipeline applies a model only through `denoise` (training step, samplers, validation loss,
task affinity), so conditioning reaches every one of them by one argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
from flax import linen as nn

from diffmtl.errors import require
from diffmtl.models import dit, toy, unet


class ModelSpec(NamedTuple):
    build: Callable[..., nn.Module]  # (config, out_channels) -> module
    check: Callable[..., None]  # (config, example_shape (H, W, C)) -> None or UserError


MODELS = {
    "unet": ModelSpec(unet.make_model, unet.check_config),  # ADM UNet (models/unet.py)
    "dit": ModelSpec(dit.make_model, dit.check_config),  # DiT (models/dit.py)
    "toy": ModelSpec(toy.make_model, toy.check_config),  # three convolutions, for tests
}


def check_model_config(config, example_shape: tuple[int, int, int]) -> None:
    """UserError naming the first field of config.model that cannot build the model."""
    cfg = config.model
    require(cfg.name in MODELS, f"model.name={cfg.name!r} is unknown; use one of {sorted(MODELS)}")
    require(0 <= cfg.dropout < 1, f"model.dropout={cfg.dropout} must be in [0, 1)")
    require(
        config.data.num_classes >= 0,
        f"data.num_classes={config.data.num_classes} must be >= 0 (0: unconditional)",
    )
    require(
        0 <= cfg.class_dropout < 1,
        f"model.class_dropout={cfg.class_dropout} must be in [0, 1) (label dropout for CFG)",
    )
    require(
        cfg.dtype in ("float32", "bfloat16"),
        f"model.dtype={cfg.dtype!r} is unknown; use one of ['float32', 'bfloat16']",
    )
    require(
        not cfg.init_checkpoint or cfg.name == "dit",
        f"model.init_checkpoint is set but model.name={cfg.name!r}: only DiT weights load",
    )
    MODELS[cfg.name].check(config, example_shape)


def output_channels(config, example_shape: tuple[int, int, int]) -> int:
    """C, or 2C with a learned variance ([eps, v])."""
    return example_shape[-1] * (2 if config.diffusion.learn_sigma else 1)


def make_model(config, example_shape: tuple[int, int, int]) -> nn.Module:
    """Checks config.model against examples of shape (H, W, C) and builds the module."""
    check_model_config(config, example_shape)
    return MODELS[config.model.name].build(config, output_channels(config, example_shape))


def denoise(
    model: nn.Module,
    params,
    x_t: jax.Array,
    t: jax.Array,
    cond: jax.Array | None = None,
    *,
    train: bool = False,
    rngs: dict | None = None,
) -> jax.Array:
    """The model's prediction for x_t [B, H, W, C] at timesteps t [B]: [B, H, W, C or 2C].

    train=True needs rngs={'dropout': key}.
    """
    return model.apply({"params": params}, x_t, t, cond, train=train, rngs=rngs)
