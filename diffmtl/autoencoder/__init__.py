"""Latent diffusion's autoencoder: the KL model (kl.py), its weights (sd_weights.py for the
published SD VAE, pretrained.py for our Fashion-MNIST one), encoding and decoding on the mesh
(codec.py) and the latent cache (latent_cache.py; CLI encode_latents.py).

This module reads config.autoencoder: which model, which weights, which latent shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffmtl.autoencoder import kl
from diffmtl.errors import UserError, require, require_one_of


def make_autoencoder(config) -> kl.AutoencoderKL:
    """The AutoencoderKL of config.autoencoder for images of config.data.channels."""
    cfg = config.autoencoder
    return kl.AutoencoderKL(
        image_channels=config.data.channels,
        base_channels=cfg.base_channels,
        channel_mults=tuple(cfg.channel_mults),
        num_res_blocks=cfg.num_res_blocks,
        latent_channels=cfg.latent_channels,
        num_groups=cfg.num_groups,
    )


def input_size(config) -> int:
    """The side of the images the encoder sees (data.image_size centre-padded)."""
    return config.autoencoder.input_size or config.data.image_size


def latent_shape(config) -> tuple[int, int, int]:
    """(h, w, z) of one latent: input_size / f on a side."""
    f = 2 ** (len(config.autoencoder.channel_mults) - 1)
    side = input_size(config) // f
    return (side, side, config.autoencoder.latent_channels)


def check_sizes(config) -> None:
    """UserError naming the first config.autoencoder size out of range (checked whether or not
    the run trains on latents)."""
    cfg = config.autoencoder
    mults = tuple(cfg.channel_mults)
    require(
        len(mults) >= 1 and all(isinstance(m, int) and m >= 1 for m in mults),
        f"autoencoder.channel_mults={mults} must be positive integers",
    )
    for field in ("base_channels", "num_res_blocks", "latent_channels", "num_groups"):
        require(cfg[field] >= 1, f"autoencoder.{field}={cfg[field]} must be >= 1")
    bad = [cfg.base_channels * m for m in mults if (cfg.base_channels * m) % cfg.num_groups]
    require(
        not bad,
        f"autoencoder.num_groups={cfg.num_groups} must divide every level's channels "
        f"(base_channels x channel_mults), not {bad[0] if bad else ''}",
    )
    require(cfg.input_size >= 0, f"autoencoder.input_size={cfg.input_size} must be >= 0 (0: none)")
    require(cfg.scale_factor > 0, f"autoencoder.scale_factor={cfg.scale_factor} must be > 0")
    require(cfg.batch_size >= 1, f"autoencoder.batch_size={cfg.batch_size} must be >= 1")
    require_one_of(cfg.sample_posterior, (False, True), "autoencoder.sample_posterior")


def check_config(config) -> None:
    """UserError naming the first config.autoencoder field that cannot encode data's images."""
    check_sizes(config)
    cfg = config.autoencoder
    size, f = input_size(config), 2 ** (len(tuple(cfg.channel_mults)) - 1)
    require(
        size >= config.data.image_size and size % f == 0,
        f"autoencoder.input_size={cfg.input_size} gives encoder inputs of {size} pixels: they "
        f"must hold data.image_size={config.data.image_size} and be a multiple of the "
        f"downsampling factor {f}",
    )
    require(
        bool(cfg.checkpoint) and cfg.checkpoint.endswith((".safetensors", ".npz")),
        f"autoencoder.checkpoint={cfg.checkpoint!r} must be a diffusers .safetensors file (the "
        "SD VAE) or an .npz of ours (tools/train_fmnist_autoencoder.py)",
    )
    require(bool(cfg.cache_dir), "data.name='latents' needs autoencoder.cache_dir (the cache)")


def params_template(config):
    """ShapeDtypeStructs of the autoencoder's params (no compute)."""
    model = make_autoencoder(config)
    size = input_size(config)
    x = jnp.zeros((1, size, size, config.data.channels))
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))["params"]


_LOADED: dict = {}  # (path, modification time, sizes) -> params: the cache, codec and
# evaluation of one run read the file once.


def load_params(config) -> dict:
    """The weights of autoencoder.checkpoint, checked against the config's sizes (UserError
    naming the file and the first bad key). Read once per file and sizes in a process."""
    import os

    path = config.autoencoder.checkpoint
    mtime = os.path.getmtime(path) if os.path.isfile(path) else None
    key = (path, mtime, str(params_template(config)))
    if mtime is not None and key in _LOADED:
        return _LOADED[key]
    params = _read_params(config)
    if mtime is not None:
        _LOADED.clear()  # one autoencoder at a time
        _LOADED[key] = params
    return params


def _read_params(config) -> dict:
    from diffmtl.autoencoder import pretrained, sd_weights

    path, template = config.autoencoder.checkpoint, params_template(config)
    if path.endswith(".safetensors"):
        return sd_weights.load_diffusers(path, template)
    params = pretrained.load_npz(path)
    got = jax.tree.map(lambda a: tuple(a.shape), params)
    want = jax.tree.map(lambda a: tuple(a.shape), template)
    if got != want:
        raise UserError(
            f"autoencoder weights {path} do not fit config.autoencoder's sizes (parameter "
            "shapes differ): set the sizes the file was trained with"
        )
    return params
