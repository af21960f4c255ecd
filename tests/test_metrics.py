"""FD, Inception Score, precision/recall and reference files: closed forms and brute force."""

import numpy as np
import pytest
import scipy.linalg

from diffmtl.errors import UserError
from diffmtl.evaluation.metrics import frechet
from diffmtl.evaluation.metrics.inception_score import inception_score
from diffmtl.evaluation.metrics.precision_recall import knn_radii, precision_recall


def _random_covariance(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    got = frechet.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("d", [3, 16, 64])
def test_frechet_distance_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_covariance(rng, d), _random_covariance(rng, d)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)
    np.testing.assert_allclose(frechet.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-8)


def test_frechet_distance_of_a_set_with_itself_is_zero_even_when_singular():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(20, 50))  # n < d: a singular covariance
    mu, sigma = frechet.feature_statistics(features)
    # Eigenvalues at rounding level (~1e-16 x trace) enter through a square root.
    assert abs(frechet.frechet_distance(mu, sigma, mu, sigma)) < 1e-7 * np.trace(sigma)
    s2 = _random_covariance(rng, 50, rank=5)
    assert np.isfinite(frechet.frechet_distance(mu, sigma, mu, s2))


def test_feature_statistics_are_mean_and_unbiased_covariance():
    x = np.random.default_rng(2).normal(size=(30, 4))
    mu, sigma = frechet.feature_statistics(x)
    centred = x - x.mean(0)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, centred.T @ centred / 29)


def test_inception_score_limits():
    n, c = 100, 10
    assert inception_score(np.zeros((n, c)))[0] == pytest.approx(1.0)
    confident = 50.0 * np.eye(c)[np.arange(n) % c]  # every class equally often, sure of each
    mean, std = inception_score(confident, num_splits=10)
    assert mean == pytest.approx(c, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    # Fewer samples than splits: one sample per split, whose score is exactly 1 (not NaN).
    assert inception_score(confident[:3], num_splits=10) == pytest.approx((1.0, 0.0))
    one_class = 50.0 * np.eye(c)[np.zeros(n, int)]
    assert inception_score(one_class)[0] == pytest.approx(1.0, abs=1e-6)


def _brute_force_precision_recall(real, fake, k):
    def radii(x):
        d = np.sum((x[:, None] - x[None]) ** 2, -1)
        return np.sort(d, axis=1)[:, k]

    def cover(points, manifold, r):
        d = np.sum((points[:, None] - manifold[None]) ** 2, -1)
        return np.mean(np.any(d <= r[None], axis=1))

    return cover(fake, real, radii(real)), cover(real, fake, radii(fake))


def test_precision_recall_equals_brute_force_and_limits():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(60, 5)), rng.normal(0.7, 1.3, size=(50, 5))
    got = precision_recall(real, fake, k=3)
    np.testing.assert_allclose(got, _brute_force_precision_recall(real, fake, 3), atol=1e-6)
    assert precision_recall(real, real, k=3) == (1.0, 1.0)
    assert precision_recall(real, fake + 100.0, k=3) == (0.0, 0.0)


def test_knn_radii_in_blocks_equal_one_block():
    x = np.random.default_rng(4).normal(size=(37, 3))
    np.testing.assert_allclose(knn_radii(x, 3, block=5), knn_radii(x, 3, block=1024), rtol=1e-6)


def test_reference_file_round_trip_and_bad_files(tmp_path):
    features = np.random.default_rng(5).normal(size=(10, 3))
    path = str(tmp_path / "ref.npz")
    frechet.save_reference(path, features, split="test")
    loaded = frechet.load_reference(path)
    mu, sigma = frechet.feature_statistics(features)
    np.testing.assert_allclose(loaded["mu"], mu)
    np.testing.assert_allclose(loaded["sigma"], sigma)
    with pytest.raises(UserError, match="missing"):
        frechet.load_reference(str(tmp_path / "absent.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="unreadable"):
        frechet.load_reference(str(tmp_path / "junk.npz"))
    np.savez(tmp_path / "wrong.npz", mu=np.zeros(3), sigma=np.zeros((2, 2)))
    with pytest.raises(UserError, match="mu \\[d\\] and sigma"):
        frechet.load_reference(str(tmp_path / "wrong.npz"))
