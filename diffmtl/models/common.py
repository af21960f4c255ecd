"""Pieces every denoiser shares: the timestep embedding and the conditioning contract."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


class Denoiser(nn.Module):
    """What every denoiser has: eps_theta(x_t, t[, cond]) called as model(x, t, cond, *, train).

    Attributes:
      out_channels: channels of the prediction (the example's; 2x with a learned variance).
      dropout: dropout rate (active when train=True; needs rngs={'dropout': key}).
      dtype: computation dtype (parameters stay float32).
    """

    out_channels: int
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding of (possibly fractional) timesteps: t [B] -> [B, dim]."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def require_unconditional(cond: jax.Array | None) -> None:
    """ValueError unless cond is None (an unconditional model, data.num_classes = 0)."""
    if cond is not None:
        raise ValueError("this model is unconditional (data.num_classes=0): call it with cond=None")


def require_labels(cond: jax.Array | None) -> None:
    """ValueError unless cond holds labels (a class-conditional model)."""
    if cond is None:
        raise ValueError("this model is class-conditional: pass labels [B] (num_classes = null)")
