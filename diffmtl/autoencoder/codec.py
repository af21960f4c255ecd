"""Encoding and decoding on the mesh: images <-> scaled latents, batch-sharded and jitted.

The codec pads images to autoencoder.input_size before encoding (centred, with -1: black) and
crops the decoder's output back, so a 28x28 image can have 8x8 latents. Latents leave `encode`
unscaled (the cache stores the posterior as the autoencoder gives it); `decode` takes latents in
diffusion space (times the scale factor) as the samplers produce them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from diffmtl import autoencoder, sharding
from diffmtl.autoencoder import kl


def pad_to(x: jax.Array, size: int) -> jax.Array:
    """[B, H, W, C] -> [B, size, size, C], centred, padded with -1."""
    top, left = (size - x.shape[1]) // 2, (size - x.shape[2]) // 2
    pads = ((0, 0), (top, size - x.shape[1] - top), (left, size - x.shape[2] - left), (0, 0))
    return jnp.pad(x, pads, constant_values=-1.0)


def crop_to(x: jax.Array, size: int) -> jax.Array:
    """[B, S, S, C] -> its centred [B, size, size, C] (the inverse of pad_to)."""
    top, left = (x.shape[1] - size) // 2, (x.shape[2] - size) // 2
    return x[:, top : top + size, left : left + size]


@dataclasses.dataclass
class Codec:
    """A config's autoencoder with its params on a mesh."""

    model: kl.AutoencoderKL
    params: object
    image_size: int  # data.image_size (pixels after cropping)
    input_size: int  # the encoder's input side
    scale_factor: float
    mesh: Mesh

    def __post_init__(self):
        batch = sharding.batch_sharding(self.mesh, 0)
        model, size, full = self.model, self.image_size, self.input_size

        def encode(params, x):  # [B, H, W, C] in [-1, 1] -> (mean, std) [B, h, w, z]
            return model.apply({"params": params}, pad_to(x, full), method=model.encode)

        def decode(params, z):  # scaled latents -> [B, H, W, C] about [-1, 1]
            out = model.apply({"params": params}, z / self.scale_factor, method=model.decode)
            return crop_to(out, size)

        self.encode_fn = jax.jit(encode, out_shardings=(batch, batch))  # (params, x)
        self.decode_fn = jax.jit(decode, out_shardings=batch)  # (params, z)
        self._batch = batch

    def encode(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Host images [B, H, W, C] in [-1, 1] (B a multiple of the batch shards) -> host
        (mean, std), unscaled."""
        x = jax.device_put(np.asarray(images, np.float32), self._batch)
        return sharding.to_host(self.encode_fn(self.params, x))

    def decode(self, z: jax.Array) -> jax.Array:
        """Scaled latents [B, h, w, z] (a global array, batch-sharded) -> pixels [-1, 1]."""
        return self.decode_fn(self.params, z)


def make_codec(config, mesh: Mesh, params=None) -> Codec:
    """The config's codec; params default to autoencoder.checkpoint's (checked first)."""
    params = autoencoder.load_params(config) if params is None else params
    return Codec(
        autoencoder.make_autoencoder(config),
        jax.device_put(params, sharding.replicated(mesh)),
        config.data.image_size,
        autoencoder.input_size(config),
        config.autoencoder.scale_factor,
        mesh,
    )
