"""Classifier-free guidance (Ho & Salimans 2022): eps = eps_u + s (eps_c - eps_u).

eps_c is the model's prediction with the sample's label, eps_u with the null label (the one
label dropout trains, data.num_classes). s = 1 is the conditional model itself and costs one
forward pass; any other s runs one batched forward over [x; x] with [labels; null]. Only the
first `channels` channels of eps are guided (0: all); the others, and a learned variance's v,
are the conditional output's. channels = 3 on 4-channel latents reproduces DiT's (and the ANT
authors') guidance, a leftover of GLIDE's RGB code: its scale 1.5 on 3 channels is about 1.375
on all 4 (DiT PR #12), which published FIDs depend on.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from diffmtl import models

# model_fn(params, x [B, H, W, C], t [B], y [B] int or None) -> output [B, H, W, C or 2C].
ModelFn = Callable[[object, jax.Array, jax.Array, jax.Array | None], jax.Array]


def combine(cond: jax.Array, uncond: jax.Array, scale: float, channels: int) -> jax.Array:
    """Guided output from the conditional and unconditional outputs [B, H, W, C'] (C' = C or
    2C): eps_u + scale (eps_c - eps_u) on the first `channels` channels (> 0), the
    conditional output elsewhere."""
    guided = uncond[..., :channels] + scale * (cond[..., :channels] - uncond[..., :channels])
    return jnp.concatenate([guided, cond[..., channels:]], axis=-1)


def guided_model_fn(
    model: nn.Module, scale: float = 1.0, channels: int = 0, null_label: int = 0
) -> ModelFn:
    """The sampler's ModelFn (dropout off): the model's output, guided when labels are given and
    scale != 1. `channels` counts eps channels only (0: every eps channel, never v)."""

    def model_fn(params, x, t, y=None):
        if y is None or scale == 1.0:
            return models.denoise(model, params, x, t, y)
        null = jnp.full_like(y, null_label)
        both = models.denoise(
            model,
            params,
            jnp.concatenate([x, x]),
            jnp.concatenate([t, t]),
            jnp.concatenate([y, null]),
        )
        cond, uncond = jnp.split(both, 2)
        return combine(cond, uncond, scale, channels or x.shape[-1])

    return model_fn
