"""A three-convolution denoiser: the tests' model for properties that do not depend on the
architecture (1 vs 4 devices, micro-batches, MTL plumbing, resume). It compiles and runs in a
fraction of the UNet's time and has every ingredient the training step handles: a timestep
embedding, dropout (so per-example keys matter) and a zero-initialised output convolution.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffmtl.models import common


class ToyDenoiser(common.Denoiser):
    """eps_theta(x_t, t): two 3x3 convolutions of `channels` channels (dropout after the first)
    and a zero-initialised output convolution (common.Denoiser: out_channels, dropout, dtype)."""

    channels: int = 8
    num_classes: int = 0  # > 0: a label embedding added to the timestep's (null = num_classes)

    @nn.compact
    def __call__(
        self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        """x [B, H, W, C], t [B], cond [B] labels (or None) -> [B, H, W, out_channels]."""
        emb = nn.Dense(self.channels, dtype=self.dtype)(common.timestep_embedding(t, self.channels))
        if self.num_classes:
            common.require_labels(cond)
            emb = emb + nn.Embed(self.num_classes + 1, self.channels, name="class_embed")(cond)
        else:
            common.require_unconditional(cond)
        h = nn.Conv(self.channels, (3, 3), dtype=self.dtype)(x.astype(self.dtype))
        h = nn.silu(h + emb[:, None, None, :])
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.silu(nn.Conv(self.channels, (3, 3), dtype=self.dtype)(h))
        out = nn.Conv(
            self.out_channels, (3, 3), kernel_init=nn.initializers.zeros, dtype=self.dtype
        )(h)
        return out.astype(jnp.float32)


def check_config(config, example_shape: tuple[int, int, int]) -> None:
    """Nothing to check: any example shape works."""
    del config, example_shape


def make_model(config, out_channels: int) -> ToyDenoiser:
    """The toy denoiser from config.model: base_channels, dropout, dtype."""
    cfg = config.model
    return ToyDenoiser(
        out_channels,
        dropout=cfg.dropout,
        dtype=jnp.dtype(cfg.dtype),
        channels=cfg.base_channels,
        num_classes=config.data.num_classes,
    )
