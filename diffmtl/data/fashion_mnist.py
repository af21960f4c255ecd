"""Fashion-MNIST from its IDX .gz files (the Debian package `dataset-fashion-mnist` puts them
in /usr/share/datasets/fashion-mnist): 60000 train / 10000 test images, 28x28x1, and labels."""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from diffmtl.data.sources import PixelSource
from diffmtl.errors import UserError

_IDX_DTYPES = {0x08: np.uint8}
# Where configs/fashion_mnist.py and the tests look: the Debian package's folder, or the folder
# DIFFMTL_FASHION_MNIST_DIR names (a host without the package, e.g. the accelerator bundle's).
DEFAULT_DIR = os.environ.get("DIFFMTL_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
INSTALL_HINT = "install it with `apt-get install dataset-fashion-mnist` or set --config.data.dir"


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


class FashionMNIST(PixelSource):
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
        self.num_classes = 10
        self.num_examples = images.shape[0]
        self.image_shape = self._images.shape[1:]

    def images(self, indices: np.ndarray) -> np.ndarray:
        return self._images[indices]
