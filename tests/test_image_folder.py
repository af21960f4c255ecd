"""Image-folder source: file order, centre crop and resize, bad files; seeded resumable flips."""

import numpy as np
import pytest
from PIL import Image

from conftest import make_tiny_config
from diffmtl import sharding
from diffmtl.data import from_config as data_from_config
from diffmtl.data import pipeline as input_pipeline
from diffmtl.data.image_folder import ImageFolder, centre_crop_resize
from diffmtl.data.sources import PixelSource
from diffmtl.errors import UserError


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_files_are_sorted_recursive_and_cropped_to_the_centre(tmp_path):
    wide = np.zeros((8, 16, 3), np.uint8)
    wide[:, 4:12] = 200  # the centre square is bright, the side bands dark
    _save(tmp_path / "b" / "wide.png", wide)
    _save(tmp_path / "a.jpg", np.full((20, 20, 3), 90, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    source = ImageFolder(str(tmp_path), 8)
    assert source.files == ["a.jpg", "b/wide.png"] and source.num_examples == 2
    batch = source.images(np.array([1, 0]))
    assert batch.shape == (2, 8, 8, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], 200)  # exactly the centre square
    assert np.all(np.abs(batch[1].astype(int) - 90) <= 2)  # JPEG, downscaled 20 -> 8


def test_class_folders_give_labels_and_the_config_must_match(tmp_path):
    """ImageNet's train layout: one sub-folder per class, classes in sorted name order."""
    for name, count in (("n02", 2), ("n01", 1), ("n03", 1)):
        for i in range(count):
            _save(tmp_path / name / f"{i}.png", np.full((8, 8, 3), 10 * i, np.uint8))
    source = ImageFolder(str(tmp_path), 8)
    assert source.classes == ["n01", "n02", "n03"]
    np.testing.assert_array_equal(source.labels, [0, 1, 1, 2])  # files: n01/0, n02/0, n02/1, n03/0
    config = make_tiny_config()
    config.data.name, config.data.dir, config.data.image_size = "image_folder", str(tmp_path), 8
    config.data.channels, config.data.num_classes = 3, 3
    source = data_from_config.make_source(config)
    np.testing.assert_array_equal(source.examples(np.array([3, 0]))["label"], [2, 0])
    config.data.num_classes = 4
    with pytest.raises(UserError, match=r"data.num_classes=4 but image_folder has 3 classes"):
        data_from_config.make_source(config)
    _save(tmp_path / "loose.png", np.zeros((8, 8, 3), np.uint8))  # a file outside any class
    with pytest.raises(UserError, match="has no labels"):
        data_from_config.make_source(config)


def test_large_images_are_box_halved_then_resized():
    gradient = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (64, 1, 3))
    out = centre_crop_resize(Image.fromarray(gradient), 16)
    assert out.shape == (16, 16, 3)
    expected = gradient[0, :, 0].reshape(16, 4).mean(1)  # a 4x box average along the ramp
    np.testing.assert_allclose(out[8, :, 0], expected, atol=2)


def test_bad_folders_and_files_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        ImageFolder(str(tmp_path / "absent"), 8)
    with pytest.raises(UserError, match="holds no"):
        ImageFolder(str(tmp_path), 8)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but not really")
    source = ImageFolder(str(tmp_path), 8)
    with pytest.raises(UserError, match=r"cannot read image .*broken.png"):
        source.images(np.array([0]))
    with pytest.raises(UserError, match="one split"):
        ImageFolder(str(tmp_path), 8, split="test")


class ColumnSource(PixelSource):
    """Image i is a 1x4x1 ramp with value i in its left column: flips are visible."""

    num_examples = 10
    image_shape = (1, 4, 1)

    def images(self, indices):
        out = np.zeros((len(indices), 1, 4, 1), np.uint8)
        out[:, 0, 0, 0] = np.asarray(indices) + 1
        return out


def test_random_flips_are_seeded_resumable_and_mirror_the_width(devices):
    mesh = sharding.make_mesh(devices=devices[:1])

    def batches(position, count, seed=3):
        it = input_pipeline.GlobalBatchIterator(
            ColumnSource(), seed, (1, 2, 2), mesh, position, random_flip=True
        )
        return [np.asarray(next(it)["x0"]).reshape(4, 4) for _ in range(count)], it.position

    stream, _ = batches(input_pipeline.DataPosition(), 5)  # 20 examples = two epochs
    flipped = np.concatenate([b[:, 0] == -1.0 for b in stream])  # left column empty: mirrored
    assert 5 <= flipped.sum() <= 15
    for b in stream:  # each row is either the ramp or its mirror
        assert np.all((b[:, 1:] == -1.0).all(1) | (b[:, :3] == -1.0).all(1))
    _, position = batches(input_pipeline.DataPosition(), 2)
    resumed, _ = batches(position, 3)
    for a, b in zip(stream[2:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    other_seed, _ = batches(input_pipeline.DataPosition(), 5, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(stream, other_seed, strict=True))
