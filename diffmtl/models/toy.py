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

    @nn.compact
    def __call__(
        self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        """x [B, H, W, C], t [B] -> [B, H, W, out_channels]; cond must be None."""
        common.require_unconditional(cond)
        emb = nn.Dense(self.channels, dtype=self.dtype)(common.timestep_embedding(t, self.channels))
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


def make_model(cfg, out_channels: int) -> ToyDenoiser:
    """The toy denoiser from the model config `cfg`: base_channels, dropout, dtype."""
    return ToyDenoiser(
        out_channels, dropout=cfg.dropout, dtype=jnp.dtype(cfg.dtype), channels=cfg.base_channels
    )
