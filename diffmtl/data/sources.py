"""The data source protocol: random access to examples (model space) and images (pixels).

A source holds `num_examples` examples. `examples(indices)` gives them as a dict of model-space
arrays (what the training step consumes: {'x0': float32 [n, H, W, C] in [-1, 1]} for pixel
sources; labels and latents join the dict later) and `images(indices)` the same examples as
uint8 pixels [n, H, W, C] (what FID references are made of). Each process can so load just the
examples its devices hold. Fashion-MNIST: fashion_mnist.py; image folders (FFHQ, CelebA-HQ
trees): image_folder.py; prepared TFDS datasets: tfds_source.py; which one a config names:
from_config.py.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from diffmtl.data import images as images_lib


class Source(Protocol):
    num_examples: int
    image_shape: tuple[int, int, int]  # pixels (H, W, C)
    example_shapes: dict[str, tuple[int, ...]]  # model-space shape of one example, per key

    def examples(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Model-space arrays [len(indices), ...] per key."""
        ...

    def images(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [len(indices), H, W, C]."""
        ...


class PixelSource:
    """A source whose model space is its pixels: examples() = {'x0': images in [-1, 1]}, plus
    {'label': int32} class ids when `with_labels` is set (data/from_config.py sets it for a
    class-conditional config).

    Subclasses set num_examples, image_shape, num_classes and labels ([n] class ids; a source
    that reads labels per record overrides examples instead) and define images(indices).
    """

    image_shape: tuple[int, int, int]
    labels: np.ndarray | None = None  # [n] class ids, when held in memory
    num_classes: int = 0  # classes of the labels the source has (0: none)
    with_labels: bool = False

    @property
    def example_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"x0": tuple(self.image_shape), **({"label": ()} if self.with_labels else {})}

    def examples(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        out = {"x0": images_lib.to_model_range(self.images(indices))}
        if self.with_labels:
            out["label"] = np.asarray(self.labels)[np.ravel(indices)].astype(np.int32)
        return out
