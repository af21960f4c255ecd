"""A source of latents: the latent cache (autoencoder/latent_cache.py) of a pixel source.

examples(indices, flips) -> {'x0': scale * mean, 'x0_std': scale * std (when the posterior is
sampled), 'label'}: model space is the autoencoder's latent space times the scale factor. The
training step draws z = x0 + x0_std * eps from each example's own key (training/steps.py), so
the draw does not depend on the device count, the micro-batches or a resume. A flipped example
reads the latents of the mirrored image (stored apart). images(indices) are the pixel source's
(FID references are made from real images).
"""

from __future__ import annotations

import os

import numpy as np

from diffmtl.errors import UserError


class LatentSource:
    """The cached latents of one split; see the module docstring."""

    stores_flips = True  # The pipeline passes flips to examples() instead of mirroring arrays.

    def __init__(self, directory: str, meta: dict, pixels, scale: float, sample_posterior: bool):
        self._pixels, self._scale, self._sample = pixels, float(scale), sample_posterior
        self.num_examples = int(meta["num_examples"])
        if self.num_examples != pixels.num_examples:
            raise UserError(
                f"latent cache {directory} holds {self.num_examples} examples, the data has "
                f"{pixels.num_examples}: delete it (it is rebuilt on first use)"
            )
        self.image_shape = tuple(pixels.image_shape)
        self.latent_shape = tuple(meta["latent_shape"])
        self.num_classes = int(meta.get("num_classes", 0))
        self.with_labels = False
        self._shard_size = int(meta["shard_size"])
        count = -(-self.num_examples // self._shard_size)
        names = ["mean", "std"] + (["mean_flip", "std_flip"] if meta["flips"] else [])
        self._arrays = {name: [] for name in names}
        for i in range(count):
            shard = os.path.join(directory, f"shard_{i:05d}")
            for name in names:
                self._arrays[name].append(
                    np.load(os.path.join(shard, f"{name}.npy"), mmap_mode="r")
                )
        labels = getattr(pixels, "labels", None)
        self.labels = None if labels is None else np.asarray(labels)

    @property
    def example_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"x0": self.latent_shape}
        if self._sample:
            shapes["x0_std"] = self.latent_shape
        if self.with_labels:
            shapes["label"] = ()
        return shapes

    def _gather(self, name: str, indices: np.ndarray) -> np.ndarray:
        shard, row = np.divmod(indices, self._shard_size)
        out = np.empty((len(indices), *self.latent_shape), np.float32)
        for s in np.unique(shard):
            mask = shard == s
            out[mask] = self._arrays[name][s][row[mask]]
        return out

    def _latents(self, name: str, indices: np.ndarray, flips: np.ndarray | None) -> np.ndarray:
        out = self._gather(name, indices)
        if flips is not None and flips.any():
            out[flips] = self._gather(f"{name}_flip", indices[flips])
        return out * self._scale

    def examples(self, indices: np.ndarray, flips: np.ndarray | None = None) -> dict:
        """Model-space latents of the examples (flips: bool [n], the mirrored images')."""
        indices = np.ravel(indices)
        flips = None if flips is None else np.ravel(flips).astype(bool)
        out = {"x0": self._latents("mean", indices, flips)}
        if self._sample:
            out["x0_std"] = self._latents("std", indices, flips)
        if self.with_labels:
            out["label"] = self.labels[indices].astype(np.int32)
        return out

    def images(self, indices: np.ndarray) -> np.ndarray:
        return self._pixels.images(indices)
