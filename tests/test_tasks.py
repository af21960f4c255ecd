"""Clusters, stratified timestep sampling, the micro-batch layout and the per-cluster losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmtl import tasks
from diffmtl.clustering import intervals


@pytest.mark.parametrize("T,k", [(1000, 5), (10, 3), (7, 7), (1000, 1)])
def test_uniform_boundaries_cover_with_equal_widths(T, k):
    b = intervals.uniform_boundaries(T, k)
    intervals.check_boundaries(b, 0, T - 1)
    widths = b[:, 1] - b[:, 0] + 1
    assert widths.sum() == T and widths.max() - widths.min() <= 1


@pytest.mark.parametrize(
    "bad", [[[0, 4], [6, 9]], [[1, 9]], [[0, 5], [5, 9]], [[0, 8]], [[0, 9], [10, 9]]]
)
def test_check_boundaries_rejects_gaps_overlaps_and_wrong_ends(bad):
    with pytest.raises(ValueError):
        intervals.check_boundaries(np.array(bad), 0, 9)


def test_stratified_sampling_counts_ranges_and_reachability():
    T, k, per_cluster = 23, 4, 500
    b = jnp.asarray(intervals.uniform_boundaries(T, k))
    t = np.asarray(tasks.sample_timesteps(jax.random.PRNGKey(0), b, per_cluster))
    assert t.shape == (k, per_cluster)  # Exactly B / k per cluster.
    for i, (lo, hi) in enumerate(np.asarray(b)):
        assert t[i].min() >= lo and t[i].max() <= hi
        assert set(t[i].tolist()) == set(range(lo, hi + 1))  # Every t reachable.


def test_microbatch_view_maps_canonical_positions():
    k, m, n = 3, 4, 2
    canonical = np.arange(k * m * n).reshape(k, m * n)
    view = tasks.microbatch_view(canonical, m)
    assert view.shape == (m, k, n)
    for mi, i, j in np.ndindex(m, k, n):
        assert view[mi, i, j] == canonical[i, mi * n + j]


def test_task_losses_match_manual_mean():
    losses = np.random.default_rng(0).random((3, 5, 4))  # [M, k, N]
    expected = [losses[:, i, :].mean() for i in range(5)]
    np.testing.assert_allclose(tasks.task_losses(jnp.asarray(losses)), expected, rtol=1e-6)
    np.testing.assert_allclose(tasks.task_losses(jnp.asarray(losses[0])), losses[0].mean(1))
