"""AutoencoderKL (Rombach et al. 2022, LDM / Stable Diffusion's "KL-f8") in Flax Linen, NHWC.

Encoder: 3x3 conv_in -> one down block per channel multiplier (num_res_blocks ResNet blocks,
then a stride-2 3x3 conv after every block but the last) -> mid block (ResNet, single-head
self-attention, ResNet) -> GroupNorm, SiLU, 3x3 conv to 2 z channels -> 1x1 quant_conv: the
posterior's mean and log-variance. Decoder: 1x1 post_quant_conv -> 3x3 conv_in -> mid block ->
one up block per multiplier, lowest resolution first (num_res_blocks + 1 ResNet blocks, then
nearest 2x upsampling and a 3x3 conv after every block but the last) -> GroupNorm, SiLU, 3x3
conv_out. GroupNorm has `num_groups` groups and eps 1e-6 everywhere.

Sub-modules carry diffusers' names with '.<i>' written '_<i>' (`down_blocks_0/resnets_1/conv1`
is diffusers' `encoder.down_blocks.0.resnets.1.conv1`), so sd_weights.py maps a published
`diffusion_pytorch_model.safetensors` onto these parameters by rule, not by table.

The SD VAE is `AutoencoderKL()` (128 channels, multipliers (1, 2, 4, 4), 2 blocks, 4 latent
channels: 256 px -> 32x32x4); the Fashion-MNIST one is small (autoencoder/pretrained.py).
Latents enter the diffusion model multiplied by the scale factor (SD: 0.18215).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

EPS = 1e-6  # GroupNorm epsilon of the LDM / SD autoencoders


class ResnetBlock(nn.Module):
    """x [B, H, W, C] -> [B, H, W, out]: GN, SiLU, conv, GN, SiLU, conv + (1x1 conv) shortcut."""

    out_channels: int
    num_groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.silu(nn.GroupNorm(self.num_groups, epsilon=EPS, name="norm1")(x))
        h = nn.Conv(self.out_channels, (3, 3), padding=1, name="conv1")(h)
        h = nn.silu(nn.GroupNorm(self.num_groups, epsilon=EPS, name="norm2")(h))
        h = nn.Conv(self.out_channels, (3, 3), padding=1, name="conv2")(h)
        if x.shape[-1] != self.out_channels:
            x = nn.Conv(self.out_channels, (1, 1), name="conv_shortcut")(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H W positions with a residual: [B, H, W, C]."""

    num_groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, height, width, c = x.shape
        h = nn.GroupNorm(self.num_groups, epsilon=EPS, name="group_norm")(x).reshape(b, -1, 1, c)
        q, k, v = (nn.Dense(c, name=name)(h) for name in ("to_q", "to_k", "to_v"))
        out = jax.nn.dot_product_attention(q, k, v).reshape(b, height, width, c)
        return x + nn.Dense(c, name="to_out_0")(out)


class MidBlock(nn.Module):
    """ResNet, attention, ResNet at the lowest resolution (channels unchanged)."""

    num_groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        x = ResnetBlock(c, self.num_groups, name="resnets_0")(x)
        x = AttentionBlock(self.num_groups, name="attentions_0")(x)
        return ResnetBlock(c, self.num_groups, name="resnets_1")(x)


class Downsample(nn.Module):
    """[B, H, W, C] -> [B, H/2, W/2, C]: pad one row and column at the end, 3x3 conv stride 2."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return nn.Conv(x.shape[-1], (3, 3), strides=2, padding="VALID", name="conv")(x)


class Upsample(nn.Module):
    """[B, H, W, C] -> [B, 2H, 2W, C]: nearest-neighbour 2x, then a 3x3 conv."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return nn.Conv(x.shape[-1], (3, 3), padding=1, name="conv")(x)


class Level(nn.Module):
    """One resolution of the encoder or decoder: `num_blocks` ResNet blocks to `channels`, then
    a 2x down- or upsampling (`resample`: 'down', 'up' or '' for none)."""

    channels: int
    num_blocks: int
    num_groups: int
    resample: str = ""

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        for j in range(self.num_blocks):
            h = ResnetBlock(self.channels, self.num_groups, name=f"resnets_{j}")(h)
        if self.resample == "down":
            h = Downsample(name="downsamplers_0")(h)
        elif self.resample == "up":
            h = Upsample(name="upsamplers_0")(h)
        return h


class Encoder(nn.Module):
    """x [B, H, W, C_in] -> [B, H/f, W/f, 2 z] (f = 2^(levels - 1))."""

    channels: tuple[int, ...]
    num_res_blocks: int
    latent_channels: int
    num_groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Conv(self.channels[0], (3, 3), padding=1, name="conv_in")(x)
        last = len(self.channels) - 1
        for i, ch in enumerate(self.channels):
            resample = "down" if i < last else ""
            h = Level(ch, self.num_res_blocks, self.num_groups, resample, name=f"down_blocks_{i}")(
                h
            )
        h = MidBlock(self.num_groups, name="mid_block")(h)
        h = nn.silu(nn.GroupNorm(self.num_groups, epsilon=EPS, name="conv_norm_out")(h))
        return nn.Conv(2 * self.latent_channels, (3, 3), padding=1, name="conv_out")(h)


class Decoder(nn.Module):
    """z [B, h, w, z] -> [B, h f, w f, C_out]."""

    channels: tuple[int, ...]
    num_res_blocks: int
    out_channels: int
    num_groups: int

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        channels = self.channels[::-1]
        h = nn.Conv(channels[0], (3, 3), padding=1, name="conv_in")(z)
        h = MidBlock(self.num_groups, name="mid_block")(h)
        last = len(channels) - 1
        for i, ch in enumerate(channels):
            resample = "up" if i < last else ""
            blocks = self.num_res_blocks + 1
            h = Level(ch, blocks, self.num_groups, resample, name=f"up_blocks_{i}")(h)
        h = nn.silu(nn.GroupNorm(self.num_groups, epsilon=EPS, name="conv_norm_out")(h))
        return nn.Conv(self.out_channels, (3, 3), padding=1, name="conv_out")(h)


class AutoencoderKL(nn.Module):
    """encode(x) -> (mean, std) of the diagonal Gaussian posterior; decode(z) -> images.

    Attributes:
      image_channels: C of the images (3 RGB, 1 Fashion-MNIST).
      base_channels, channel_mults: level i has base_channels * channel_mults[i] channels; the
        downsampling factor is 2^(len(channel_mults) - 1) (SD: 128, (1, 2, 4, 4): f8).
      num_res_blocks: ResNet blocks per encoder level (the decoder has one more).
      latent_channels: z (SD: 4).
      num_groups: GroupNorm groups (SD: 32; must divide every level's channels).
    Images are in [-1, 1]; latents are unscaled (multiply by the scale factor for diffusion).
    """

    image_channels: int = 3
    base_channels: int = 128
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    latent_channels: int = 4
    num_groups: int = 32

    def setup(self):
        channels = tuple(self.base_channels * m for m in self.channel_mults)
        self.encoder = Encoder(channels, self.num_res_blocks, self.latent_channels, self.num_groups)
        self.decoder = Decoder(channels, self.num_res_blocks, self.image_channels, self.num_groups)
        self.quant_conv = nn.Conv(2 * self.latent_channels, (1, 1))
        self.post_quant_conv = nn.Conv(self.latent_channels, (1, 1))

    @property
    def downsampling(self) -> int:
        """f: image size / latent size."""
        return 2 ** (len(self.channel_mults) - 1)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x [B, H, W, C] in [-1, 1] -> (mean, std), each [B, H/f, W/f, z]; the log-variance is
        clipped to [-30, 20] as in LDM."""
        moments = self.quant_conv(self.encoder(x))
        mean, log_var = jnp.split(moments, 2, axis=-1)
        return mean, jnp.exp(0.5 * jnp.clip(log_var, -30.0, 20.0))

    def decode(self, z: jax.Array) -> jax.Array:
        """z [B, h, w, z] (unscaled) -> images [B, h f, w f, C] (about [-1, 1], not clipped)."""
        return self.decoder(self.post_quant_conv(z))

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> tuple[jax.Array, ...]:
        """Reconstruction of x through a posterior sample (its mean when key is None): returns
        (reconstruction, mean, std)."""
        mean, std = self.encode(x)
        z = mean if key is None else mean + std * jax.random.normal(key, mean.shape)
        return self.decode(z), mean, std


def kl_to_standard_normal(mean: jax.Array, std: jax.Array) -> jax.Array:
    """KL(N(mean, std^2) || N(0, 1)) summed over all but the batch axis: [B, ...] -> [B]."""
    terms = 0.5 * (mean**2 + std**2 - 1.0) - jnp.log(std)
    return jnp.sum(terms.reshape(terms.shape[0], -1), axis=-1)
