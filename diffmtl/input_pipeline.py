"""Global batches from an image source: deterministic order, resumable position, sharded arrays.

The example stream is the concatenation of per-epoch permutations, epoch e's drawn from
(seed, e). Batch s takes the next B indices of that stream (an epoch boundary may fall inside
a batch), so the position (epoch, index) after a batch fully determines every later batch.
Indices are laid out in the canonical [k, M N] order of tasks.py and viewed as [M, k, N]; the
array is built with `jax.make_array_from_callback`, so each device's shard loads only its own
images: with several processes each one reads just its share. With random_flip, whether the
example at stream position (epoch, i) is mirrored is drawn from (seed, epoch) too, so flips are
resumable as well.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh

from diffmtl import sharding, tasks
from diffmtl.datasets import ImageSource


@dataclasses.dataclass(frozen=True)
class DataPosition:
    """Where the stream continues: `index` into the permutation of `epoch`."""

    epoch: int = 0
    index: int = 0


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The order of epoch `epoch`: a permutation of 0..n-1 determined by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def flip_mask(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """Which stream positions of epoch `epoch` are mirrored (random flip): bool [n], from seed."""
    return np.random.default_rng([seed, epoch, 1]).random(num_examples) < 0.5


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, C] -> float32 in [-1, 1]."""
    return images.astype(np.float32) / 127.5 - 1.0


class GlobalBatchIterator:
    """Infinite iterator of images [M, k, N, H, W, C], float32 in [-1, 1], N split over devices."""

    def __init__(
        self,
        source: ImageSource,
        seed: int,
        layout: tuple[int, int, int],
        mesh: Mesh,
        position: DataPosition = DataPosition(),
        random_flip: bool = False,
    ):
        self._source = source
        self._random_flip = random_flip
        self.last_flips = None  # bool [B] of the last next_indices() when random_flip
        self._seed = seed
        self._layout = layout
        self._sharding = sharding.batch_sharding(mesh, 2)
        self._permutation = None
        self.position = position

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(permutation [n], flip mask [n] or None) of `epoch`, drawn once per epoch."""
        if self._permutation is None or self._permutation[0] != epoch:
            n = self._source.num_examples
            flips = flip_mask(self._seed, epoch, n) if self._random_flip else None
            self._permutation = (epoch, epoch_permutation(self._seed, epoch, n), flips)
        return self._permutation[1:]

    def next_indices(self) -> np.ndarray:
        """The next B example indices of the stream, [B], advancing the position."""
        batch_size = int(np.prod(self._layout))
        epoch, index = self.position.epoch, self.position.index
        parts, flips = [], []
        while batch_size > 0:
            order, mask = self._epoch(epoch)
            take = order[index : index + batch_size]
            parts.append(take)
            if mask is not None:
                flips.append(mask[index : index + take.size])
            batch_size -= take.size
            index += take.size
            if index == self._source.num_examples:
                epoch, index = epoch + 1, 0
        self.position = DataPosition(epoch, index)
        self.last_flips = np.concatenate(flips) if flips else None
        return np.concatenate(parts)

    def __iter__(self):
        return self

    def __next__(self) -> jax.Array:
        m, k, n = self._layout
        indices = tasks.microbatch_view(self.next_indices().reshape(k, m * n), m)  # [M, k, N]
        flips = self.last_flips
        if flips is not None:
            flips = tasks.microbatch_view(flips.reshape(k, m * n), m)
        shape = (m, k, n, *self._source.image_shape)

        def load(index):
            rows = indices[index[:3]]
            x = to_model_range(self._source.images(rows.ravel())).reshape(rows.shape + shape[3:])
            if flips is None:
                return x
            return np.where(flips[index[:3]][..., None, None, None], x[..., ::-1, :], x)

        return jax.make_array_from_callback(shape, self._sharding, load)
