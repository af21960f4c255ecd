"""The committed FID_FMNIST classifier: checksum, accuracy on the test split, file errors."""

import shutil

import numpy as np
import pytest

from conftest import FASHION_MNIST_DIR
from diffmtl.data.fashion_mnist import FashionMNIST
from diffmtl.errors import UserError
from diffmtl.evaluation.metrics import fmnist_classifier, params_io

MIN_TEST_ACCURACY = 0.90


def test_committed_weights_match_their_checksum_and_accuracy():
    assert fmnist_classifier.WEIGHTS_SHA256, "the committed weights need their checksum"
    params = fmnist_classifier.load_params()
    test = FashionMNIST(FASHION_MNIST_DIR, "test")
    images = test.images(np.arange(test.num_examples))
    assert fmnist_classifier.accuracy(params, images, test.labels) >= MIN_TEST_ACCURACY


def test_changed_or_missing_weights_are_refused(tmp_path):
    changed = str(tmp_path / "changed.npz")
    shutil.copy(fmnist_classifier.WEIGHTS_PATH, changed)
    params, _ = params_io.load_params(changed, "classifier", "")
    params["Dense_1"]["bias"] = params["Dense_1"]["bias"] + 1e-3
    params_io.save_params(changed, params)
    with pytest.raises(UserError, match="git checkout"):
        fmnist_classifier.load_params(changed)
    with pytest.raises(UserError, match="train_fmnist_classifier"):
        fmnist_classifier.load_params(str(tmp_path / "absent.npz"))


def test_checksum_ignores_the_zip_metadata_but_not_the_values():
    a = {"w": np.arange(6.0).reshape(2, 3)}
    assert params_io.checksum(a) == params_io.checksum({"w": a["w"].copy()})
    assert params_io.checksum(a) != params_io.checksum({"w": a["w"].reshape(3, 2)})
    assert params_io.checksum(a) != params_io.checksum({"v": a["w"]})
