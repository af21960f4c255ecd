"""FID, Inception Score, precision and recall of generated images against a reference set.

The reference is an .npz {mu, sigma, features}: statistics of the feature network on real images
(FID) and their features (precision/recall). `reference_features` makes it from an image source;
`python -m diffmtl.evaluation.metrics.reference` writes it for a config's data.
"""

from __future__ import annotations

import numpy as np

from diffmtl.data.sources import Source
from diffmtl.evaluation.metrics import frechet
from diffmtl.evaluation.metrics.inception_score import inception_score
from diffmtl.evaluation.metrics.precision_recall import precision_recall


def reference_indices(num_examples: int, num_images: int, seed: int = 0) -> np.ndarray:
    """The first `num_images` of a fixed permutation of the source (all of it if fewer)."""
    order = np.random.default_rng(seed).permutation(num_examples)
    return np.sort(order[: min(num_images, num_examples)])


def reference_features(source: Source, extract, num_images: int, batch: int = 1000):
    """Features [n, d] of n = min(num_images, source size) real images."""
    indices = reference_indices(source.num_examples, num_images)
    chunks = [
        extract(source.images(indices[i : i + batch]))[0] for i in range(0, len(indices), batch)
    ]
    return np.concatenate(chunks)


def sample_quality(
    extract, reference: dict[str, np.ndarray], samples: np.ndarray, k: int = 3
) -> dict[str, float]:
    """fid, inception_score (and its std over 10 splits), precision, recall of uint8 samples.

    Precision/recall compare the samples with as many reference features (the first ones):
    both k-NN radii depend on the set size, so the two sets are kept equally large.
    """
    features, logits = extract(samples)
    mu, sigma = frechet.feature_statistics(features)
    score, score_std = inception_score(logits)
    out = {
        "fid": frechet.frechet_distance(mu, sigma, reference["mu"], reference["sigma"]),
        "inception_score": score,
        "inception_score_std": score_std,
    }
    if "features" in reference:
        real = reference["features"][: len(features)]
        out["precision"], out["recall"] = precision_recall(real, features[: len(real)], k)
    return out
