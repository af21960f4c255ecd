"""Image-folder source: a tree of PNG / JPEG files (FFHQ, CelebA-HQ), centre-cropped and resized.

Files are every *.png, *.jpg or *.jpeg under the directory, sorted by relative path, so
example i is the same file on every host. Each is read on demand (a process reads only the
examples its devices hold), converted to RGB, halved with a box filter while its short side
is at least twice `image_size`, resized with bicubic so that the short side is `image_size`
(the ADM codebases' way) and centre-cropped to a square. A file that cannot be read stops the
run with one line naming it.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffmtl.data.sources import PixelSource
from diffmtl.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg")


def centre_crop_resize(image: Image.Image, size: int) -> np.ndarray:
    """PIL image -> uint8 [size, size, 3]: box-halve, bicubic to short side `size`, centre crop."""
    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.reduce(2)
    scale = size / min(image.size)
    image = image.resize(
        tuple(max(size, round(d * scale)) for d in image.size), Image.Resampling.BICUBIC
    )
    array = np.asarray(image)
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    return array[top : top + size, left : left + size]


class ImageFolder(PixelSource):
    """All images under `directory` as uint8 [n, image_size, image_size, 3]; one split."""

    def __init__(self, directory: str, image_size: int, split: str = "train"):
        if split != "train":
            raise UserError(
                f"an image folder has one split ('train'), not {split!r}: set data.split='train' "
                "and give eval.reference_path (python -m diffmtl.evaluation.metrics.reference)"
            )
        if not os.path.isdir(directory):
            raise UserError(f"data.dir {directory} does not exist: point it at the image tree")
        self.directory = directory
        self.files = sorted(
            os.path.relpath(os.path.join(root, name), directory)
            for root, _, names in os.walk(directory)
            for name in names
            if name.lower().endswith(EXTENSIONS)
        )
        if not self.files:
            raise UserError(f"data.dir {directory} holds no {'/'.join(EXTENSIONS)} files")
        self.num_examples = len(self.files)
        # Classes: the sorted sub-folders holding images (ImageNet's train layout); a file
        # directly in data.dir has none, and then the folder has no labels.
        folders = [os.path.dirname(f).split(os.sep)[0] for f in self.files]
        self.classes = sorted(set(folders)) if all(folders) else []
        index = {name: i for i, name in enumerate(self.classes)}
        self.labels = np.array([index[f] for f in folders], np.int32) if self.classes else None
        self.num_classes = len(self.classes)
        self.image_shape = (image_size, image_size, 3)

    def load(self, index: int) -> np.ndarray:
        path = os.path.join(self.directory, self.files[index])
        try:
            with Image.open(path) as image:
                return centre_crop_resize(image, self.image_shape[0])
        except (OSError, UnidentifiedImageError) as e:
            raise UserError(f"cannot read image {path} ({e}): remove or replace the file") from e

    def images(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([self.load(int(i)) for i in np.ravel(indices)])
