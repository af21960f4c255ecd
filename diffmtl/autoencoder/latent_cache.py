"""The latent cache: each example's posterior (mean, std) under the autoencoder, encoded once.

Layout of <autoencoder.cache_dir>/<split>/:
  shard_<i>/  mean.npy, std.npy [S, h, w, z] float32 (unscaled), label.npy [S] int32 with
              labels, and mean_flip.npy / std_flip.npy (the mirrored images') with
              data.random_flip: a flip of the image is not a flip of its latent.
  meta.json   what the cache holds and what made it (the autoencoder's checksum and sizes, the
              pixel source); written last, so a cache without it is incomplete.
Shard i holds examples [i S, (i + 1) S). A shard is written to shard_<i>.tmp and renamed when
complete, so a killed encoding resumes at the shards that are missing; process p of P encodes
shards p, p + P, ... on its own devices. Opening a cache whose meta.json names another
autoencoder or data is refused in one line (rebuild it or point autoencoder.cache_dir
elsewhere).
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
from absl import logging
from etils import epath
from flax import traverse_util
from jax.experimental import multihost_utils

from diffmtl import autoencoder, sharding
from diffmtl.autoencoder import codec as codec_lib
from diffmtl.data import images as images_lib
from diffmtl.errors import UserError
from diffmtl.evaluation.metrics import params_io

SHARD_SIZE = 4096  # examples per shard
ARRAYS = ("mean", "std")


def split_dir(config, split: str) -> str:
    return os.path.join(config.autoencoder.cache_dir, split)


def identity(config, params) -> dict:
    """What a cache must have been made with to serve this config."""
    flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()}
    cfg, data = config.autoencoder, config.data
    return {
        "autoencoder_sha256": params_io.checksum(flat),
        "latent_shape": list(autoencoder.latent_shape(config)),
        "input_size": autoencoder.input_size(config),
        "pixel_source": data.pixel_source,
        "data_dir": data.dir,
        "tfds_name": data.tfds_name,
        "image_size": data.image_size,
        "channels": data.channels,
        "flips": bool(data.random_flip),
        "labels": bool(data.num_classes),
        "sizes": {f: cfg[f] for f in ("base_channels", "num_res_blocks", "latent_channels")},
    }


def read_meta(config, split: str) -> dict | None:
    path = epath.Path(split_dir(config, split)) / "meta.json"
    return json.loads(path.read_text()) if path.exists() else None


def check_meta(meta: dict, expected: dict, where: str) -> None:
    """UserError naming the first field in which a cache differs from what the config needs."""
    for key, value in expected.items():
        if json.loads(json.dumps(meta.get(key))) != json.loads(json.dumps(value)):
            raise UserError(
                f"latent cache {where} was made with {key}={meta.get(key)!r}, this config needs "
                f"{value!r}: delete it (it is rebuilt on first use) or set autoencoder.cache_dir"
            )


def _shard_ranges(num_examples: int) -> list[tuple[int, int]]:
    return [(s, min(s + SHARD_SIZE, num_examples)) for s in range(0, num_examples, SHARD_SIZE)]


def _encode_in_batches(codec, pixels, indices: np.ndarray, flip: bool, batch: int) -> dict:
    """{'mean', 'std'} of the examples `indices` (mirrored when flip), in padded batches."""
    out = {name: [] for name in ARRAYS}
    for start in range(0, len(indices), batch):
        idx = indices[start : start + batch]
        x = images_lib.to_model_range(pixels.images(idx))
        if flip:
            x = x[:, :, ::-1]
        pad = batch - len(idx)
        x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])
        for name, value in zip(ARRAYS, codec.encode(x), strict=True):
            out[name].append(value[: len(idx)])
    return {name: np.concatenate(values) for name, values in out.items()}


def encode_split(config, split: str, pixels, params=None, progress: bool = True) -> dict:
    """Encodes what is missing of `split` into the cache and returns its meta.

    pixels: the split's pixel source. Each process encodes its shards on its local devices.
    """
    params = autoencoder.load_params(config) if params is None else params
    expected = identity(config, params)
    root = epath.Path(split_dir(config, split))
    meta = read_meta(config, split)
    if meta is not None:
        check_meta(meta, expected, str(root))
        return meta
    mesh = sharding.make_mesh(devices=jax.local_devices())
    codec = codec_lib.make_codec(config, mesh, params)
    shards = _shard_ranges(pixels.num_examples)
    mine = [i for i in range(len(shards)) if i % jax.process_count() == jax.process_index()]
    todo = [i for i in mine if not (root / f"shard_{i:05d}").exists()]
    batch = config.autoencoder.batch_size
    batch += -batch % sharding.num_batch_shards(mesh)
    logging.info("Latent cache %s: %d of %d shards to encode", root, len(todo), len(shards))
    bar = _progress(len(todo), progress)
    for i in todo:
        indices = np.arange(*shards[i])
        arrays = _encode_in_batches(codec, pixels, indices, False, batch)
        if config.data.random_flip:
            flipped = _encode_in_batches(codec, pixels, indices, True, batch)
            arrays.update({f"{k}_flip": v for k, v in flipped.items()})
        if config.data.num_classes:
            arrays["label"] = np.asarray(pixels.labels)[indices].astype(np.int32)
        _write_shard(root / f"shard_{i:05d}", arrays)
        bar.update(1)
    bar.close()
    multihost_utils.sync_global_devices(f"latent cache {root}")
    meta = {
        **expected,
        "num_examples": pixels.num_examples,
        "shard_size": SHARD_SIZE,
        "num_classes": int(getattr(pixels, "num_classes", 0)),
    }
    if jax.process_index() == 0:
        (root / "meta.json").write_text(json.dumps(meta, indent=2))
    multihost_utils.sync_global_devices(f"latent cache {root} meta")
    return meta


def _write_shard(path: epath.Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes the arrays to <path>.tmp, then renames it to path (complete or absent)."""
    tmp = epath.Path(f"{path}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, value in arrays.items():
        with (tmp / f"{name}.npy").open("wb") as f:
            np.save(f, value)
    tmp.rename(path)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="shard", disable=not enabled or jax.process_index() != 0)
