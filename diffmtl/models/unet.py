"""ADM-style UNet (Dhariwal & Nichol 2021) in Flax Linen, from test-sized to FFHQ-256-sized.

Sinusoidal timestep embedding followed by an MLP; residual blocks with GroupNorm, SiLU, dropout
and scale-shift conditioning on the embedding; multi-head self-attention at the configured
resolutions; channel multipliers per level; strided-conv downsampling and nearest-neighbour
upsampling; skip connections concatenated on the way up. Output convolutions start at zero, so
a fresh model predicts eps = 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffmtl.errors import require
from diffmtl.models import common as models_common

_zeros = nn.initializers.zeros


class ResBlock(nn.Module):
    """GN-SiLU-conv, scale-shift by the time embedding, GN-SiLU-dropout-conv, plus a skip."""

    out_channels: int
    num_groups: int
    dropout: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, train: bool) -> jax.Array:
        """x [B, H, W, C], emb [B, E] -> [B, H, W, out_channels]."""
        h = nn.silu(nn.GroupNorm(self.num_groups, dtype=self.dtype)(x))
        h = nn.Conv(self.out_channels, (3, 3), dtype=self.dtype)(h)
        scale_shift = nn.Dense(2 * self.out_channels, dtype=self.dtype)(nn.silu(emb))
        scale, shift = jnp.split(scale_shift[:, None, None, :], 2, axis=-1)
        h = nn.GroupNorm(self.num_groups, dtype=self.dtype)(h) * (1 + scale) + shift
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        h = nn.Conv(self.out_channels, (3, 3), kernel_init=_zeros, dtype=self.dtype)(h)
        if x.shape[-1] != self.out_channels:
            x = nn.Conv(self.out_channels, (1, 1), dtype=self.dtype)(x)
        return x + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H x W positions, residual, output projection at zero."""

    num_heads: int
    num_groups: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, H, W, C] -> [B, H, W, C]."""
        b, height, width, c = x.shape
        h = nn.GroupNorm(self.num_groups, dtype=self.dtype)(x).reshape(b, height * width, c)
        h = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dtype=self.dtype, out_kernel_init=_zeros
        )(h)
        return x + h.reshape(b, height, width, c)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: [B, H, W, C] -> [B, H / 2, W / 2, C]."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), dtype=self.dtype)(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution: [B, H, W, C] -> [B, 2H, 2W, C]."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method="nearest")
        return nn.Conv(c, (3, 3), dtype=self.dtype)(x)


class UNet(models_common.Denoiser):
    """eps_theta(x_t, t).

    Attributes:
      base_channels: channels at the first level.
      channel_mult: per-level multipliers of base_channels; the image is halved between levels,
        so the image size must be divisible by 2 ** (len(channel_mult) - 1).
      num_res_blocks: residual blocks per level on the way down (one more on the way up).
      attention_resolutions: feature-map sizes (pixels on a side) that get self-attention.
      num_heads: attention heads.
      num_groups: GroupNorm groups; must divide base_channels.
      num_classes: class labels 0..num_classes-1 and the null label num_classes (CFG), whose
        embedding is added to the timestep embedding as in ADM; 0: unconditional.
      (models_common.Denoiser: out_channels, dropout (inside residual blocks), dtype.)
    """

    base_channels: int = 64
    channel_mult: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: Sequence[int] = (16,)
    num_heads: int = 4
    num_groups: int = 32
    num_classes: int = 0

    @nn.compact
    def __call__(
        self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        """x [B, H, W, C] in about [-1, 1], t [B] timesteps -> eps prediction [B, H, W, out].

        cond: class labels [B] int (num_classes > 0), or None (unconditional).
        """
        emb_dim = 4 * self.base_channels
        emb = models_common.timestep_embedding(t, self.base_channels)
        emb = nn.Dense(emb_dim, dtype=self.dtype)(emb)
        emb = nn.Dense(emb_dim, dtype=self.dtype)(nn.silu(emb))
        if self.num_classes:
            models_common.require_labels(cond)
            emb = emb + nn.Embed(self.num_classes + 1, emb_dim, name="class_embed")(cond)
        else:
            models_common.require_unconditional(cond)

        def res_block(h, channels):
            return ResBlock(channels, self.num_groups, self.dropout, self.dtype)(h, emb, train)

        def maybe_attend(h):
            if h.shape[1] in self.attention_resolutions:
                return AttentionBlock(self.num_heads, self.num_groups, self.dtype)(h)
            return h

        h = nn.Conv(self.base_channels, (3, 3), dtype=self.dtype)(x.astype(self.dtype))
        skips = [h]
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                h = maybe_attend(res_block(h, mult * self.base_channels))
                skips.append(h)
            if level != len(self.channel_mult) - 1:
                h = Downsample(self.dtype)(h)
                skips.append(h)

        h = res_block(h, h.shape[-1])
        h = AttentionBlock(self.num_heads, self.num_groups, self.dtype)(h)
        h = res_block(h, h.shape[-1])

        for level, mult in reversed(list(enumerate(self.channel_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = maybe_attend(res_block(h, mult * self.base_channels))
            if level != 0:
                h = Upsample(self.dtype)(h)

        h = nn.silu(nn.GroupNorm(self.num_groups, dtype=self.dtype)(h))
        h = nn.Conv(self.out_channels, (3, 3), kernel_init=_zeros, dtype=self.dtype)(h)
        return h.astype(jnp.float32)


def check_config(config, example_shape: tuple[int, int, int]) -> None:
    """UserError naming the first field of config.model that cannot build a UNet for examples
    of shape example_shape (H, W, C)."""
    cfg, size = config.model, example_shape[0]
    factor = 2 ** (len(cfg.channel_mult) - 1)
    require(
        size % factor == 0,
        f"data.image_size={size} cannot be halved {len(cfg.channel_mult) - 1} times by "
        f"model.channel_mult={tuple(cfg.channel_mult)}: use a size divisible by {factor} "
        f"or fewer levels",
    )
    require(
        cfg.base_channels % cfg.num_groups == 0,
        f"model.num_groups={cfg.num_groups} must divide model.base_channels={cfg.base_channels}",
    )
    sizes = [size // 2**i for i in range(len(cfg.channel_mult))]
    unused = sorted(set(cfg.attention_resolutions) - set(sizes))
    require(
        not unused,
        f"model.attention_resolutions has {unused}, which no level reaches; levels are {sizes}",
    )


def make_model(config, out_channels: int) -> UNet:
    """Builds the UNet from config.model with `out_channels` output channels, conditioned on
    config.data.num_classes classes (0: unconditional)."""
    cfg = config.model
    return UNet(
        out_channels=out_channels,
        base_channels=cfg.base_channels,
        channel_mult=tuple(cfg.channel_mult),
        num_res_blocks=cfg.num_res_blocks,
        attention_resolutions=tuple(cfg.attention_resolutions),
        num_heads=cfg.num_heads,
        num_groups=cfg.num_groups,
        dropout=cfg.dropout,
        dtype=jnp.dtype(cfg.dtype),
        num_classes=config.data.num_classes,
    )
