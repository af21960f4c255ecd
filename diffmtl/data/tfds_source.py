"""TFDS source: a prepared TensorFlow Datasets split under data.dir (a local path or a bucket).

Nothing is downloaded: the dataset must already be prepared (README: "Running on TPU / GPU").
Example i is the split's i-th record in TFDS index order, so the input pipeline's seeded
permutations apply unchanged and a run resumes exactly at its saved position in both formats:

  ArrayRecord (prepared with file_format=array_record): random access; each process reads
    only the examples its devices hold. The format for pods.
  TFRecord (TFDS's default): no random access, so the split is read once, in index order
    (files in order, no interleaving), into host memory (uint8; FFHQ at 256 px is 13.8 GB per
    host) and indexed from there. Exact too, but every host holds and reads the whole split.

Images whose size is not data.image_size are centre-cropped and resized as image folders are.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from diffmtl.data import images as images_lib
from diffmtl.data.image_folder import centre_crop_resize
from diffmtl.data.sources import PixelSource
from diffmtl.errors import UserError

RANDOM_ACCESS_FORMATS = ("array_record", "parquet")


MISSING_TFDS = (
    "data.name='tfds' needs TensorFlow Datasets, which is not installed: "
    "pip install 'diffmtl[tfds]' (or prepare an image folder: data.name='image_folder')"
)


def import_tfds():
    """tensorflow_datasets, imported on first use (it imports TensorFlow: 2 GB that the rest of
    diffmtl does not need); a UserError naming the extra to install where it is absent."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise UserError(MISSING_TFDS) from e
    return tfds


def _builder(name: str, data_dir: str):
    tfds = import_tfds()

    hint = (
        f"prepare it there first (`tfds build {name} --data_dir={data_dir} "
        f"--file_format=array_record`; README) or fix data.tfds_name / data.dir"
    )
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises several types for a missing or unknown dataset.
        raise UserError(f"no TFDS dataset {name!r} under data.dir={data_dir}: {hint}") from e
    if not builder.is_prepared():
        raise UserError(f"TFDS dataset {name!r} is not prepared under data.dir={data_dir}: {hint}")
    return builder


class TfdsSource(PixelSource):
    """A prepared TFDS split's images as uint8 [n, image_size, image_size, C]."""

    def __init__(
        self,
        name: str,
        data_dir: str,
        split: str,
        image_size: int,
        image_key: str,
        label_key: str = "",
    ):
        builder = _builder(name, data_dir)
        splits = builder.info.splits
        if split not in splits:
            raise UserError(f"data.split={split!r} is not in {name!r}; it has {sorted(splits)}")
        if image_key not in builder.info.features:
            raise UserError(
                f"data.image_key={image_key!r} is not a feature of {name!r}; it has "
                f"{sorted(builder.info.features.keys())}"
            )
        feature = builder.info.features[image_key]
        self._size, self._key = image_size, image_key
        features = builder.info.features
        # Labels: a ClassLabel feature named label_key ('' or absent: the dataset has none).
        has_labels = bool(label_key) and label_key in features
        self._label_key = label_key if has_labels else ""
        self.num_classes = int(features[label_key].num_classes) if has_labels else 0
        self.num_examples = splits[split].num_examples
        self.image_shape = (image_size, image_size, feature.shape[-1])
        self.file_format = builder.info.file_format.value
        if self.file_format in RANDOM_ACCESS_FORMATS:
            self._records = builder.as_data_source(split=split)
            self._in_memory = None
        else:
            self._records = None
            self._in_memory, self.labels = self._read_all(builder, split)

    def _read_all(self, builder, split: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(images [n, H, W, C], labels [n] or None), read once in index order."""
        tfds = import_tfds()

        logging.info(
            "TFDS %s is %s (no random access): reading %d images into memory; prepare it with "
            "file_format=array_record to read only each process's share",
            builder.name,
            self.file_format,
            self.num_examples,
        )
        read_config = tfds.ReadConfig(interleave_cycle_length=1)  # files in order: index order
        dataset = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)
        images, labels = [], []
        for example in tfds.as_numpy(dataset):
            images.append(self._fit(example[self._key]))
            if self._label_key:
                labels.append(int(example[self._label_key]))
        return np.stack(images), (np.asarray(labels, np.int32) if self._label_key else None)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """uint8 [h, w, C] -> [image_size, image_size, C] (centre crop + resize if needed)."""
        if image.shape[:2] == (self._size, self._size):
            return image
        if image.shape[-1] != 3:
            raise UserError(
                f"TFDS images are {image.shape}, not {self._size} px: only RGB images are "
                f"resized; prepare the dataset at data.image_size={self._size}"
            )
        return centre_crop_resize(Image.fromarray(image), self._size)

    def images(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [len(indices), H, W, C]."""
        indices = [int(i) for i in np.ravel(indices)]
        if self._in_memory is not None:
            return self._in_memory[indices]
        records = self._records.__getitems__(indices)
        return np.stack([self._fit(np.asarray(r[self._key])) for r in records])

    def examples(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """PixelSource.examples; with random access and labels, each record is read once."""
        if not self.with_labels or self._in_memory is not None:
            return super().examples(indices)
        records = self._records.__getitems__([int(i) for i in np.ravel(indices)])
        images = np.stack([self._fit(np.asarray(r[self._key])) for r in records])
        labels = np.asarray([int(r[self._label_key]) for r in records], np.int32)
        return {"x0": images_lib.to_model_range(images), "label": labels}
