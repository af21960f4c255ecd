"""IDX parsing, the real Fashion-MNIST files, deterministic resumable order, sharded batches."""

import gzip
import os

import jax
import numpy as np
import pytest

from conftest import FASHION_MNIST_DIR
from diffmtl import sharding, tasks
from diffmtl.data import fashion_mnist
from diffmtl.data import pipeline as input_pipeline
from diffmtl.data.sources import PixelSource
from diffmtl.errors import UserError


def write_idx(path, array, truncate=0):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(data[: len(data) - truncate])


def test_read_idx_round_trip_and_errors(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "ok.gz", array)
    np.testing.assert_array_equal(fashion_mnist.read_idx(str(tmp_path / "ok.gz")), array)
    write_idx(tmp_path / "short.gz", array, truncate=5)
    with pytest.raises(UserError, match="truncated"):
        fashion_mnist.read_idx(str(tmp_path / "short.gz"))
    with pytest.raises(UserError, match="missing data file"):
        fashion_mnist.read_idx(str(tmp_path / "absent.gz"))
    (tmp_path / "plain.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="unreadable"):
        fashion_mnist.read_idx(str(tmp_path / "plain.gz"))


def test_missing_data_dir_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist.FashionMNIST(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("split,count", [("train", 60000), ("test", 10000)])
def test_fashion_mnist_files(split, count):
    source = fashion_mnist.FashionMNIST(FASHION_MNIST_DIR, split)
    assert source.num_examples == count and source.image_shape == (28, 28, 1)
    images = source.examples(np.arange(count))["x0"]
    assert images.min() == -1.0 and images.max() == 1.0
    assert set(np.unique(source.labels)) == set(range(10))


class CountingSource(PixelSource):
    """Image i is filled with the value i (mod 256); n examples of 2x2x1."""

    def __init__(self, n):
        self.num_examples = n
        self.image_shape = (2, 2, 1)

    def images(self, indices):
        return np.broadcast_to((indices % 256)[:, None, None, None], (len(indices), 2, 2, 1))


def test_order_is_a_permutation_per_epoch_and_depends_on_seed_and_epoch():
    perm = input_pipeline.epoch_permutation(0, 0, 100)
    assert sorted(perm) == list(range(100))
    np.testing.assert_array_equal(perm, input_pipeline.epoch_permutation(0, 0, 100))
    assert not np.array_equal(perm, input_pipeline.epoch_permutation(0, 1, 100))
    assert not np.array_equal(perm, input_pipeline.epoch_permutation(1, 0, 100))


def test_stream_crosses_epochs_and_resumes_from_position(devices):
    mesh = sharding.make_mesh(devices=devices[:1])
    it = input_pipeline.GlobalBatchIterator(CountingSource(10), 3, (1, 2, 2), mesh)
    stream = np.concatenate([it.next_indices() for _ in range(5)])  # 20 = two epochs.
    np.testing.assert_array_equal(stream[:10], input_pipeline.epoch_permutation(3, 0, 10))
    np.testing.assert_array_equal(stream[10:], input_pipeline.epoch_permutation(3, 1, 10))
    assert it.position == input_pipeline.DataPosition(2, 0)
    resumed = input_pipeline.GlobalBatchIterator(
        CountingSource(10), 3, (1, 2, 2), mesh, input_pipeline.DataPosition(0, 8)
    )
    np.testing.assert_array_equal(resumed.next_indices(), stream[8:12])


def test_batches_are_sharded_and_laid_out_by_cluster(devices):
    layout = (2, 3, 4)  # M, k, N with N split over 4 devices.
    source = CountingSource(1000)
    batches = []
    for mesh_devices in (devices[:1], devices):
        mesh = sharding.make_mesh(devices=mesh_devices)
        batch = next(input_pipeline.GlobalBatchIterator(source, 0, layout, mesh))
        assert set(batch) == {"x0"}
        batch = batch["x0"]
        assert batch.shape == (*layout, 2, 2, 1)
        assert batch.sharding.spec == sharding.batch_spec(2)
        batches.append(np.asarray(batch))
    np.testing.assert_array_equal(batches[0], batches[1])
    order = input_pipeline.epoch_permutation(0, 0, 1000)[:24]
    expected = tasks.microbatch_view(order.reshape(3, 8), 2)
    np.testing.assert_allclose(batches[0][..., 0, 0, 0], (expected % 256) / 127.5 - 1.0, atol=1e-6)


class LabelledSource(CountingSource):
    """CountingSource whose example i has label i mod 7."""

    with_labels = True

    def __init__(self, n):
        super().__init__(n)
        self.labels = np.arange(n) % 7


def test_labels_follow_their_images_across_devices_epochs_and_resume(devices):
    layout, n = (1, 2, 4), 12  # 8 examples a batch: epochs end inside batches
    batches = {}
    for name, mesh_devices in (("one", devices[:1]), ("four", devices)):
        mesh = sharding.make_mesh(devices=mesh_devices)
        it = input_pipeline.GlobalBatchIterator(LabelledSource(n), 0, layout, mesh)
        batches[name] = [jax.device_get(next(it)) for _ in range(5)]
        if name == "four":  # resume from the position after batch 2
            it = input_pipeline.GlobalBatchIterator(
                LabelledSource(n), 0, layout, mesh, input_pipeline.DataPosition(1, 4)
            )
            resumed = [jax.device_get(next(it)) for _ in range(3)]
    for a, b in zip(batches["one"], batches["four"], strict=True):
        for key in ("x0", "label"):
            np.testing.assert_array_equal(a[key], b[key])
    for a, b in zip(batches["four"][2:], resumed, strict=True):
        np.testing.assert_array_equal(a["label"], b["label"])
    for batch in batches["four"]:
        index = np.rint((batch["x0"][..., 0, 0, 0] + 1.0) * 127.5).astype(int)  # image i holds i
        np.testing.assert_array_equal(batch["label"], index % 7)
        assert batch["label"].dtype == np.int32


def test_fashion_mnist_dir_exists():
    assert os.path.isdir(FASHION_MNIST_DIR), "run `make setup` (installs dataset-fashion-mnist)"
    assert jax.device_count() == 4


class LeftColumnSource(LabelledSource):
    """Image i holds i (mod 256) in its left column and 0 in its right one: flips show; its
    label is i mod 7."""

    def images(self, indices):
        out = np.zeros((len(indices), 2, 2, 1), np.uint8)
        out[:, :, 0, 0] = (np.asarray(indices) % 256)[:, None]
        return out


@pytest.mark.parametrize("mesh_shape", [(4, 1), (2, 2)])
def test_two_processes_shares_form_the_one_process_batch(devices, mesh_shape):
    """Devices 0-1 and 2-3 as two processes: each loads only its rows of N (flips included), and
    the shares side by side are the global batch that one process with 4 devices assembles."""
    mesh = sharding.make_mesh(*mesh_shape, devices=devices)
    args = (LeftColumnSource(1000), 5, (2, 3, 8), mesh)
    one_process = jax.device_get(next(input_pipeline.GlobalBatchIterator(*args, random_flip=True)))
    it = input_pipeline.GlobalBatchIterator(*args, random_flip=True)
    indices, flips = it.next_layout()
    shares = [it.share(indices, flips, d) for d in (devices[:2], devices[2:])]
    assert [s["x0"].shape[2] for s in shares] == [4, 4]
    assert 0 < flips.mean() < 1 and np.any(one_process["x0"][..., 0, 1, 0] > -1)  # some mirrored
    for key in ("x0", "label"):  # labels follow their images into each process's share
        np.testing.assert_array_equal(np.concatenate([s[key] for s in shares], 2), one_process[key])
    with pytest.raises(ValueError, match="non-contiguous"):
        input_pipeline.process_rows(it._sharding, it.global_shapes["x0"], [devices[0], devices[2]])
