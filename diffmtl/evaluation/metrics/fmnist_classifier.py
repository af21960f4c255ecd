"""The Fashion-MNIST feature network behind FID_FMNIST, precision and recall on the default data.

A small CNN classifier trained by this project (tools/train_fmnist_classifier.py); its
128-d penultimate features play the role Inception's pool3 features play for FID on natural
images. XLA's results differ slightly between CPU models, so the trained weights are committed
(weights/fmnist_classifier.npz) and checked against WEIGHTS_SHA256: FID_FMNIST means the same
network on every machine.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from diffmtl.errors import UserError
from diffmtl.evaluation.metrics import params_io

WEIGHTS_PATH = os.path.join(os.path.dirname(__file__), "weights", "fmnist_classifier.npz")
WEIGHTS_SHA256 = "fb256104737ee758d52a7823c2eb2d834fe373d21c75165f81dbf324f9ba51ae"
REGENERATE = "python tools/train_fmnist_classifier.py"
NUM_CLASSES = 10
FEATURE_DIM = 128


class FashionMNISTClassifier(nn.Module):
    """uint8 or [0, 255] float images [n, 28, 28, 1] -> (features [n, 128], logits [n, 10])."""

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False):
        x = images.astype(jnp.float32) / 127.5 - 1.0
        for channels in (32, 64):
            x = nn.relu(nn.Conv(channels, (3, 3))(x))
            x = nn.relu(nn.Conv(channels, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), (2, 2))  # 28 -> 14 -> 7
        features = nn.relu(nn.Dense(FEATURE_DIM)(x.reshape(x.shape[0], -1)))  # [n, 128]
        h = nn.Dropout(0.3, deterministic=not train)(features)
        return features, nn.Dense(NUM_CLASSES)(h)


def load_params(path: str = WEIGHTS_PATH, sha256: str = WEIGHTS_SHA256) -> dict:
    """The committed classifier's params, verified against `sha256` (UserError if it differs)."""
    params, digest = params_io.load_params(path, "Fashion-MNIST classifier", f"run `{REGENERATE}`")
    if sha256 and digest != sha256:
        raise UserError(
            f"Fashion-MNIST classifier {path} has checksum {digest[:12]}..., expected "
            f"{sha256[:12]}...: restore it with `git checkout {path}`"
        )
    return params


def accuracy(params, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Top-1 accuracy of the classifier on uint8 images [n, 28, 28, 1] with labels [n]."""
    model = FashionMNISTClassifier()
    predict = jax.jit(lambda p, x: jnp.argmax(model.apply({"params": p}, x)[1], -1))
    hits = 0
    for i in range(0, len(images), batch_size):
        predicted = np.asarray(predict(params, images[i : i + batch_size]))
        hits += int(np.sum(predicted == labels[i : i + batch_size]))
    return hits / len(images)
