"""TFDS source: a small dataset the test prepares (ArrayRecord and TFRecord) gives the same
batches as an image folder of the same images; missing or wrong datasets are named."""

import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from conftest import make_tiny_config
from diffmtl import sharding
from diffmtl.data import from_config as data_from_config
from diffmtl.data import pipeline as input_pipeline
from diffmtl.data import prepare_tfds
from diffmtl.data.image_folder import ImageFolder
from diffmtl.data.tfds_source import TfdsSource
from diffmtl.errors import UserError

NUM_IMAGES = 12
SIZE = 8


class TinyFolderImages(tfds.core.GeneratorBasedBuilder):
    """The PNG files of `folder`, in sorted order (shuffling disabled: index i = file i)."""

    VERSION = tfds.core.Version("1.0.0")
    folder = ""

    def _info(self):
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(num_classes=3),
            }
        )
        return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, name in enumerate(sorted(os.listdir(self.folder))):
            image = np.asarray(Image.open(os.path.join(self.folder, name)))
            yield i, {"image": image, "label": i % 3}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(image folder, {file_format: data_dir}) holding the same NUM_IMAGES images."""
    root = tmp_path_factory.mktemp("tfds")
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(NUM_IMAGES):  # Not square and larger than SIZE: both paths crop and resize.
        shape = (SIZE * 2 + i % 3, SIZE * 3, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i:03d}.png")
    TinyFolderImages.folder = str(folder)
    data_dirs = {}
    for file_format in ("array_record", "tfrecord"):
        data_dirs[file_format] = str(root / file_format)
        builder = TinyFolderImages(data_dir=data_dirs[file_format], file_format=file_format)
        builder.download_and_prepare()
    return str(folder), data_dirs


def _batches(source, devices, num_batches=3):
    """Batches of 10 with random flips: they cross the 12-image epoch boundary."""
    mesh = sharding.make_mesh(devices=devices)
    data = input_pipeline.GlobalBatchIterator(source, 3, (1, 5, 2), mesh, random_flip=True)
    return [np.asarray(jax.device_get(next(data)["x0"])) for _ in range(num_batches)]


@pytest.mark.parametrize("file_format", ["array_record", "tfrecord"])
def test_tfds_and_image_folder_give_identical_batches(prepared, devices, file_format):
    folder, data_dirs = prepared
    tfds_source = TfdsSource("tiny_folder_images", data_dirs[file_format], "train", SIZE, "image")
    assert tfds_source.file_format == file_format and tfds_source.num_examples == NUM_IMAGES
    expected = _batches(ImageFolder(folder, SIZE), devices[:2])
    for got, want in zip(_batches(tfds_source, devices[:2]), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("file_format", ["array_record", "tfrecord"])
def test_tfds_labels_follow_their_images(prepared, file_format):
    """Example i has label i mod 3 (the fixture's ClassLabel), read with its image."""
    _, data_dirs = prepared
    config = make_tiny_config()
    config.data.name, config.data.dir = "tfds", data_dirs[file_format]
    config.data.tfds_name, config.data.image_size, config.data.channels = (
        "tiny_folder_images",
        SIZE,
        3,
    )
    config.data.num_classes = 3
    source = data_from_config.make_source(config)
    indices = np.array([7, 0, 11, 5])
    examples = source.examples(indices)
    np.testing.assert_array_equal(examples["label"], indices % 3)
    np.testing.assert_array_equal(
        examples["x0"], TfdsSource("tiny_folder_images", data_dirs[file_format], "train", SIZE,
                                   "image").examples(indices)["x0"]
    )  # fmt: skip
    config.data.num_classes = 4
    with pytest.raises(UserError, match="data.num_classes=4 but tfds has 3 classes"):
        data_from_config.make_source(config)
    config.data.num_classes, config.data.label_key = 3, "class"
    with pytest.raises(UserError, match="has no labels"):
        data_from_config.make_source(config)


def test_make_source_reads_tfds_from_the_config(prepared):
    _, data_dirs = prepared
    config = make_tiny_config()
    config.data.name, config.data.dir = "tfds", data_dirs["array_record"]
    config.data.tfds_name, config.data.image_size, config.data.channels = (
        "tiny_folder_images",
        SIZE,
        3,
    )
    source = data_from_config.make_source(config)
    assert source.images(np.array([4, 0])).shape == (2, SIZE, SIZE, 3)


def test_missing_and_wrong_datasets_are_named(prepared, tmp_path):
    _, data_dirs = prepared
    with pytest.raises(UserError, match=r"no TFDS dataset 'no_such_dataset' under data.dir"):
        TfdsSource("no_such_dataset", str(tmp_path), "train", SIZE, "image")
    with pytest.raises(UserError, match=r"not prepared under data.dir=.*tfds build"):
        TfdsSource("tiny_folder_images", str(tmp_path), "train", SIZE, "image")
    with pytest.raises(UserError, match=r"data.split='test' is not in .* it has \['train'\]"):
        TfdsSource("tiny_folder_images", data_dirs["array_record"], "test", SIZE, "image")
    with pytest.raises(UserError, match=r"data.image_key='img' is not a feature"):
        TfdsSource("tiny_folder_images", data_dirs["array_record"], "train", SIZE, "img")


def test_prepare_tfds_writes_a_folder_that_reads_back_by_name(prepared, tmp_path, devices):
    """The prepare tool's dataset (not registered in this process: read from its files) gives
    the image folder's batches."""
    folder, _ = prepared
    data_dir = str(tmp_path / "tfds")
    prepare_tfds.prepare(folder, "prepared_faces", SIZE, data_dir)
    source = TfdsSource("prepared_faces", data_dir, "train", SIZE, "image")
    assert source.file_format == "array_record"
    expected = _batches(ImageFolder(folder, SIZE), devices[:2])
    for got, want in zip(_batches(source, devices[:2]), expected, strict=True):
        np.testing.assert_array_equal(got, want)
