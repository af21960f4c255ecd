"""Frechet distance between Gaussians fitted to features (FID), and reference statistics files.

FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). The trace term is computed as
tr((A S2 A)^(1/2)) with A = S1^(1/2): A S2 A is symmetric positive semi-definite and similar to
S1 S2, so its eigenvalues are those of S1 S2, real and >= 0 up to rounding. Two symmetric
eigendecompositions in float64 replace the general matrix square root (scipy.linalg.sqrtm) that
the usual FID code uses, which can return complex parts and needs an epsilon on singular
covariances (e.g. fewer samples than feature dimensions).
"""

from __future__ import annotations

import numpy as np
from etils import epath

from diffmtl.errors import UserError
from diffmtl.evaluation.metrics import params_io


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [n, d] -> (mu [d], sigma [d, d]) in float64, sigma with the 1/(n-1) estimator."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((sigma + sigma.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """FD between N(mu1, sigma1) and N(mu2, sigma2); mu [d], sigma [d, d]."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _psd_sqrt(sigma1)
    product = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    trace_sqrt = np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None)))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def save_reference(path: str, features: np.ndarray, **info) -> None:
    """Writes {mu, sigma, features, info...} (.npz): statistics for FID, features for P&R."""
    mu, sigma = feature_statistics(features)
    with epath.Path(path).open("wb") as f:
        np.savez(f, mu=mu, sigma=sigma, features=np.asarray(features, np.float32), **info)


def load_reference(path: str) -> dict[str, np.ndarray]:
    """Reads a reference .npz with at least mu [d] and sigma [d, d]; UserError if unusable."""
    fix = "make it with `python -m diffmtl.evaluation.metrics.reference` or fix eval.reference_path"
    reference = params_io.read_npz(path, "reference statistics", fix)
    mu, sigma = reference.get("mu"), reference.get("sigma")
    if mu is None or sigma is None or mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise UserError(f"{path} needs arrays mu [d] and sigma [d, d]: {fix}")
    return reference
