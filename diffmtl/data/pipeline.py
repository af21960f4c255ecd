"""Global batches from a data source: deterministic order, resumable position, sharded arrays.

A batch is a dict of model-space arrays laid out [M, k, N, ...] ({'x0': [M, k, N, H, W, C]}),
N split over the devices; one sharding spec serves every key.

The example stream is the concatenation of per-epoch permutations, epoch e's drawn from
(seed, e). Batch s takes the next B indices of that stream (an epoch boundary may fall inside
a batch), so the position (epoch, index) after a batch fully determines every later batch.
Indices are laid out in the canonical [k, M N] order of tasks.py and viewed as [M, k, N]. Each
process loads only its share, the contiguous range of N that its devices hold (`process_rows`),
and the global array is assembled with `jax.make_array_from_process_local_data`: with several
processes each one reads just the images its devices need. With random_flip, whether the
example at stream position (epoch, i) is mirrored is drawn from (seed, epoch) too, so flips are
resumable as well.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh

from diffmtl import sharding, tasks
from diffmtl.data.sources import Source


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


def process_rows(batch_sharding, shape: tuple[int, ...], devices) -> slice:
    """The range of the batch axis (axis 2 of `shape`) that `devices` hold, as one slice.

    Raises ValueError when their rows are not contiguous (a mesh that interleaves processes).
    """
    index_map = batch_sharding.devices_indices_map(shape)
    ranges = sorted({index_map[d][2].indices(shape[2])[:2] for d in devices})
    if any(a[1] != b[0] for a, b in zip(ranges, ranges[1:], strict=False)):
        raise ValueError(f"devices {devices} hold non-contiguous batch rows {ranges}")
    return slice(ranges[0][0], ranges[-1][1])


class GlobalBatchIterator:
    """Infinite iterator of batches {key: [M, k, N, ...]} of model-space examples, N split over
    the devices."""

    def __init__(
        self,
        source: Source,
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
        self._local_devices = [
            d for d in mesh.devices.flat if d.process_index == jax.process_index()
        ]
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

    def next_layout(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The next batch's indices [M, k, N] and flips [M, k, N] (or None), advancing."""
        m, k, n = self._layout
        indices = tasks.microbatch_view(self.next_indices().reshape(k, m * n), m)
        flips = self.last_flips
        if flips is not None:
            flips = tasks.microbatch_view(flips.reshape(k, m * n), m)
        return indices, flips

    @property
    def global_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each key's global batch shape [M, k, N, ...]."""
        return {key: (*self._layout, *shape) for key, shape in self._source.example_shapes.items()}

    def share(self, indices: np.ndarray, flips: np.ndarray | None, devices) -> dict:
        """The examples that `devices` hold: {key: [M, k, n, ...]}, n = their rows of N.

        A flip mirrors the width axis of the image-shaped entries ([..., H, W, C]).
        """
        rows = process_rows(self._sharding, (*self._layout,), devices)
        indices = indices[:, :, rows]
        if flips is not None:
            flips = flips[:, :, rows]
        if getattr(self._source, "stores_flips", False):  # latents of mirrored images
            examples = self._source.examples(
                indices.ravel(), None if flips is None else flips.ravel()
            )
            flips = None
        else:
            examples = self._source.examples(indices.ravel())
        share = {}
        for key, x in examples.items():
            x = x.reshape(indices.shape + x.shape[1:])
            if flips is not None and x.ndim == indices.ndim + 3:
                x = np.where(flips[..., None, None, None], x[..., ::-1, :], x)
            share[key] = x
        return share

    def __next__(self) -> dict[str, jax.Array]:
        local = self.share(*self.next_layout(), self._local_devices)
        return {
            key: jax.make_array_from_process_local_data(self._sharding, x, self.global_shapes[key])
            for key, x in local.items()
        }
