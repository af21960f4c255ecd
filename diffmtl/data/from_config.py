"""config.data -> the data source it names (checked against the config before any compile)."""

from __future__ import annotations

from diffmtl.data import fashion_mnist, image_folder, tfds_source
from diffmtl.data.sources import Source
from diffmtl.errors import UserError

# name -> (data config, split) -> source.
SOURCES = {
    "fashion_mnist": lambda cfg, split: fashion_mnist.FashionMNIST(cfg.dir, split),
    "image_folder": lambda cfg, split: image_folder.ImageFolder(cfg.dir, cfg.image_size, split),
    "tfds": lambda cfg, split: tfds_source.TfdsSource(
        cfg.tfds_name, cfg.dir, split, cfg.image_size, cfg.image_key, cfg.label_key
    ),
}


def make_source(config, split: str | None = None) -> Source:
    """The source named by `config.data.name` (split: data.split unless given); checks its files.

    'latents': the latent cache of data.pixel_source's split, encoded first if missing.
    """
    cfg = config.data
    split = cfg.split if split is None else split
    if cfg.name == "latents":
        return _latent_source(config, split)
    return _pixel_source(config, cfg.name, split)


def _latent_source(config, split: str):
    from diffmtl.autoencoder import latent_cache
    from diffmtl.data import latents

    pixels = _pixel_source(config, config.data.pixel_source, split)
    meta = latent_cache.encode_split(config, split, pixels)
    source = latents.LatentSource(
        latent_cache.split_dir(config, split),
        meta,
        pixels,
        config.autoencoder.scale_factor,
        config.autoencoder.sample_posterior,
    )
    source.with_labels = pixels.with_labels
    return source


def _pixel_source(config, name: str, split: str) -> Source:
    cfg = config.data
    if name not in SOURCES:
        field = "data.pixel_source" if cfg.name == "latents" else "data.name"
        allowed = sorted(SOURCES) + ([] if cfg.name == "latents" else ["latents"])
        raise UserError(f"{field}={name!r} is unknown; use one of {allowed}")
    source = SOURCES[name](cfg, split)
    if source.image_shape[0] != cfg.image_size:
        raise UserError(
            f"data.image_size={cfg.image_size} but {name} images are {source.image_shape[0]} "
            f"pixels; set --config.data.image_size={source.image_shape[0]}"
        )
    if source.image_shape[-1] != cfg.channels:
        raise UserError(
            f"data.channels={cfg.channels} but {name} images have {source.image_shape[-1]}; "
            f"set --config.data.channels={source.image_shape[-1]}"
        )
    if cfg.num_classes:
        _check_labels(source, cfg, name)
        source.with_labels = True
    return source


def _check_labels(source: Source, cfg, name: str) -> None:
    """UserError unless the source has labels of exactly data.num_classes classes."""
    found = source.num_classes
    if not found:
        raise UserError(
            f"data.num_classes={cfg.num_classes} but {name} at {cfg.dir} has no labels (an "
            "image folder needs one sub-folder per class; a TFDS dataset a ClassLabel feature "
            "data.label_key): set data.num_classes=0"
        )
    if found != cfg.num_classes:
        raise UserError(
            f"data.num_classes={cfg.num_classes} but {name} has {found} classes; set "
            f"--config.data.num_classes={found}"
        )
