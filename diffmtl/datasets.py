"""Image sources with random access: `source.images(indices) -> uint8 [n, H, W, C]`.

The input pipeline only needs `num_examples`, `image_shape` and `images(indices)`, so that each
process can load just the examples its devices hold. Fashion-MNIST is read from its IDX .gz
files (the Debian package `dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist);
image folders (FFHQ, CelebA-HQ trees) by image_folder.py, prepared TFDS datasets by tfds_source.py.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import Protocol

import numpy as np

from diffmtl.errors import UserError
from diffmtl.image_folder import ImageFolder
from diffmtl.tfds_source import TfdsSource

_IDX_DTYPES = {0x08: np.uint8}
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
INSTALL_HINT = "install it with `apt-get install dataset-fashion-mnist` or set --config.data.dir"


class ImageSource(Protocol):
    num_examples: int
    image_shape: tuple[int, int, int]  # (H, W, C)

    def images(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [len(indices), H, W, C]."""
        ...


def read_idx(path: str) -> np.ndarray:
    """Reads a gzipped IDX file (magic 0x0000TTDD) into an array; DataError if malformed."""
    if not os.path.isfile(path):
        raise UserError(f"missing data file {path}: {INSTALL_HINT}")
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"unreadable data file {path} ({e}): reinstall it ({INSTALL_HINT})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise UserError(f"{path} is not an IDX file of uint8: reinstall it ({INSTALL_HINT})")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise UserError(
            f"{path} is truncated or corrupt ({len(data)} bytes, header says {expected}): "
            f"reinstall it ({INSTALL_HINT})"
        )
    return np.frombuffer(data, _IDX_DTYPES[data[2]], offset=header).reshape(dims)


class FashionMNIST:
    """Fashion-MNIST from IDX files: 60000 train / 10000 test images, 28x28x1 uint8, labels."""

    def __init__(self, data_dir: str, split: str = "train"):
        if split not in FASHION_MNIST_FILES:
            raise UserError(
                f"data.split={split!r} is unknown; use one of {sorted(FASHION_MNIST_FILES)}"
            )
        if not os.path.isdir(data_dir):
            raise UserError(f"data.dir {data_dir} does not exist: {INSTALL_HINT}")
        image_file, label_file = FASHION_MNIST_FILES[split]
        images = read_idx(os.path.join(data_dir, image_file))
        labels = read_idx(os.path.join(data_dir, label_file))
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise UserError(
                f"{data_dir}: images {images.shape} and labels {labels.shape} do not match"
            )
        self._images = images[..., None]  # [n, 28, 28, 1]
        self.labels = labels  # [n] uint8 class ids
        self.num_examples = images.shape[0]
        self.image_shape = self._images.shape[1:]

    def images(self, indices: np.ndarray) -> np.ndarray:
        return self._images[indices]


# name -> (data config, split) -> source.
SOURCES = {
    "fashion_mnist": lambda cfg, split: FashionMNIST(cfg.dir, split),
    "image_folder": lambda cfg, split: ImageFolder(cfg.dir, cfg.image_size, split),
    "tfds": lambda cfg, split: TfdsSource(
        cfg.tfds_name, cfg.dir, split, cfg.image_size, cfg.image_key
    ),
}


def make_source(config, split: str | None = None) -> ImageSource:
    """The source named by `config.data.name` (split: data.split unless given); checks its files."""
    cfg = config.data
    if cfg.name not in SOURCES:
        raise UserError(f"data.name={cfg.name!r} is unknown; use one of {sorted(SOURCES)}")
    source = SOURCES[cfg.name](cfg, cfg.split if split is None else split)
    if source.image_shape[0] != cfg.image_size:
        raise UserError(
            f"data.image_size={cfg.image_size} but {cfg.name} images are {source.image_shape[0]} "
            f"pixels; set --config.data.image_size={source.image_shape[0]}"
        )
    if source.image_shape[-1] != cfg.channels:
        raise UserError(
            f"data.channels={cfg.channels} but {cfg.name} images have {source.image_shape[-1]}; "
            f"set --config.data.channels={source.image_shape[-1]}"
        )
    return source
