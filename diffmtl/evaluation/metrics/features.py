"""Feature networks for sample quality: a name -> (features [n, d], logits [n, c]) of uint8 images.

'fmnist_classifier': the committed Fashion-MNIST CNN (128-d features; FID_FMNIST).
'inception': FID's InceptionV3 (2048-d pool3 features, 1008 logits) from eval.inception_path.
Extraction is one jit over global batches split across the mesh's batch shards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh

from diffmtl import sharding
from diffmtl.evaluation.metrics import fmnist_classifier, inception


class FeatureNetwork(NamedTuple):
    name: str
    model: nn.Module  # apply({'params': p}, uint8 [n, H, W, C]) -> (features, logits)
    params: dict


NETWORKS: dict[str, Callable[[object], FeatureNetwork]] = {
    "fmnist_classifier": lambda cfg: FeatureNetwork(
        "fmnist_classifier",
        fmnist_classifier.FashionMNISTClassifier(),
        fmnist_classifier.load_params(),
    ),
    "inception": lambda cfg: FeatureNetwork(
        "inception", inception.InceptionV3(), inception.load_params(cfg.inception_path)
    ),
}
METRIC_NAMES = {"fmnist_classifier": "FID_FMNIST", "inception": "FID"}


def make_feature_network(eval_config) -> FeatureNetwork:
    """The network named by eval.feature_network, its weights loaded (and checked)."""
    return NETWORKS[eval_config.feature_network](eval_config)


def make_extractor(net: FeatureNetwork, mesh: Mesh, batch_size: int):
    """Returns extract(uint8 images [n, H, W, C]) -> (features [n, d], logits [n, c]) float32.

    Images go through in global batches of `batch_size` (divisible by the batch shards); the
    last batch is padded with copies of the first image and cut.
    """
    params = jax.device_put(net.params, sharding.replicated(mesh))
    spec = sharding.batch_sharding(mesh, 0)
    apply = jax.jit(lambda p, x: net.model.apply({"params": p}, x))

    def extract(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, logits = [], []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            pad = batch_size - len(batch)
            batch = np.concatenate([batch, np.repeat(images[:1], pad, axis=0)])
            f, lg = sharding.to_host(apply(params, jax.device_put(batch, spec)))
            features.append(f[: batch_size - pad])
            logits.append(lg[: batch_size - pad])
        return np.concatenate(features), np.concatenate(logits)

    return extract
