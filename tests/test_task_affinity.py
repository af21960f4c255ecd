"""Task affinity: the count sketch's documented error, TAS against a direct cosine computation on a
tiny model, chunked == unchunked, interpolation, and `--mode=tas` end to end on a checkpoint."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from conftest import make_tiny_config
from diffmtl import models, modes
from diffmtl.analysis import sketch, task_affinity
from diffmtl.clustering import from_config
from diffmtl.diffusion import losses
from diffmtl.diffusion import schedule as diffusion
from diffmtl.errors import UserError
from diffmtl.training import checkpointing, experiment


def _pair_with_cosine(rng, dim, cosine):
    """Two unit vectors [D] with the given cosine."""
    a, b = rng.standard_normal((2, dim))
    a /= np.linalg.norm(a)
    b -= (b @ a) * a
    b /= np.linalg.norm(b)
    return a, cosine * a + np.sqrt(1 - cosine**2) * b


@pytest.mark.parametrize("cosine", [0.0, 0.5, 0.9])
def test_sketched_cosines_are_unbiased_with_the_documented_spread(cosine):
    """Over 300 sketches (d = 256, D = 5000): inner products unbiased, cosine bias O(1/d), and
    cosine standard deviation (1 - c^2) / sqrt(d) within 25%."""
    rng = np.random.default_rng(0)
    g, u = _pair_with_cosine(rng, 5000, cosine)
    d, trials = 256, 300
    rows = jnp.asarray(np.stack([g, u]), jnp.float32)
    apply = jax.jit(sketch.apply_count_sketch)
    inner, cosines = [], []
    for seed in range(trials):
        sg, su = np.asarray(apply(sketch.make_count_sketch(5000, d, seed), rows), np.float64)
        inner.append(sg @ su)
        cosines.append(inner[-1] / (np.linalg.norm(sg) * np.linalg.norm(su)))
    inner_std = np.sqrt((1 + cosine**2) / d)  # the docstring's variance for unit vectors
    assert abs(np.mean(inner) - cosine) < 4 * inner_std / np.sqrt(trials)
    expected_std = (1 - cosine**2) / np.sqrt(d)
    assert abs(np.mean(cosines) - cosine) < 4 * expected_std / np.sqrt(trials) + 2 / d
    assert np.std(cosines) == pytest.approx(expected_std, rel=0.25)


def test_sketch_is_linear_and_keeps_the_norm_on_average():
    s = sketch.make_count_sketch(1000, 64, 3)
    x, y = jax.random.normal(jax.random.PRNGKey(0), (2, 1, 1000))
    np.testing.assert_allclose(
        sketch.apply_count_sketch(s, 2 * x - y),
        2 * sketch.apply_count_sketch(s, x) - sketch.apply_count_sketch(s, y),
        atol=1e-5,
    )
    # Each coordinate lands in exactly one bucket with sign +-1: the sum of |S e_j| is D.
    np.testing.assert_allclose(np.abs(sketch.apply_count_sketch(s, jnp.eye(1000))).sum(), 1000)


@pytest.fixture(scope="module")
def tiny(devices):
    """A tiny model with perturbed parameters (the zero output layer would make every gradient
    but the last layer's vanish), 8 images, their noise and a grid of 6 timesteps."""
    config = make_tiny_config()
    exp = experiment.build_experiment(config, devices)
    state = experiment.initial_state(config, exp)
    key = jax.random.PRNGKey(1)
    params = jax.tree.map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.fold_in(key, p.size), p.shape),
        state.params,
    )
    x0 = exp.source.examples(np.arange(8))["x0"]
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(2), x0.shape))
    grid = np.array([0, 10, 200, 500, 800, 999], np.int32)
    return config, exp, params, jnp.asarray(x0), jnp.asarray(noise), grid


def _direct_affinity(exp, params, x0, noise, grid):
    """Cosines of gradients taken one timestep at a time, flattened, in float64."""

    def task_loss(p, t):
        ts = jnp.full((x0.shape[0],), t, jnp.int32)
        x_t = diffusion.q_sample(exp.diffusion, x0, ts, noise)
        out = models.denoise(exp.model, p, x_t, ts)
        return jnp.mean(losses.per_example_loss(exp.diffusion, out, x0, x_t, ts, noise))

    grad = jax.jit(jax.grad(task_loss))
    rows = np.stack([np.asarray(ravel_pytree(grad(params, int(t)))[0], np.float64) for t in grid])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows @ rows.T


@pytest.fixture(scope="module")
def direct(tiny):
    _, exp, params, x0, noise, grid = tiny
    return _direct_affinity(exp, params, x0, noise, grid)


def test_exact_affinity_equals_the_direct_cosines_chunked_or_not(tiny, direct):
    _, exp, params, x0, noise, grid = tiny
    grads = task_affinity.make_timestep_gradients(exp.model, exp.diffusion)
    block = task_affinity.make_gram_block(grads)
    whole = task_affinity.exact_affinity(block, params, x0, noise, grid, chunk_size=len(grid))
    chunked = task_affinity.exact_affinity(block, params, x0, noise, grid, chunk_size=4)
    np.testing.assert_allclose(whole, direct, atol=2e-5)
    np.testing.assert_allclose(chunked, whole, atol=2e-5)
    np.testing.assert_allclose(np.diag(whole), 1.0, atol=1e-6)
    np.testing.assert_array_equal(whole, whole.T)
    assert np.all(np.abs(whole) <= 1.0)
    assert whole.min() < 0.9  # distant timesteps disagree: the test is not trivially all ones


def test_projected_affinity_stays_within_its_documented_error(tiny, direct):
    _, exp, params, x0, noise, grid = tiny
    grads = task_affinity.make_timestep_gradients(exp.model, exp.diffusion)
    num_params = sum(p.size for p in jax.tree.leaves(params))
    d = 8192
    s = sketch.make_count_sketch(num_params, d, 0)
    sketched = task_affinity.make_sketched_gradients(grads)
    projected = task_affinity.projected_affinity(sketched, params, x0, noise, grid, s, chunk_size=4)
    errors = np.abs(projected - direct)[np.triu_indices(len(grid), 1)]
    assert errors.max() < 4 * np.sqrt(2 / d), errors.max()  # 4 sigma of the bound sqrt(2 / d)
    assert np.sqrt(np.mean(errors**2)) < 2 * np.sqrt(2 / d)
    np.testing.assert_allclose(np.diag(projected), 1.0, atol=1e-6)
    np.testing.assert_array_equal(projected, projected.T)


def test_interpolation_to_all_timesteps_keeps_grid_values_and_the_properties():
    rng = np.random.default_rng(0)
    grid = np.array([0, 3, 9])
    tas = np.array([[1.0, 0.5, -0.2], [0.5, 1.0, 0.1], [-0.2, 0.1, 1.0]])
    full = task_affinity.interpolate_to_all_timesteps(tas, grid, 10)
    assert full.shape == (10, 10)
    np.testing.assert_allclose(full[np.ix_(grid, grid)], tas)
    np.testing.assert_allclose(full[0, 6], 0.5 * 0.5 + 0.5 * -0.2)  # halfway between t = 3 and 9
    np.testing.assert_allclose(np.diag(full), 1.0)
    np.testing.assert_allclose(full, full.T)
    assert np.all(np.abs(full) <= 1.0)
    same = rng.uniform(-1, 1, (4, 4))
    assert task_affinity.interpolate_to_all_timesteps(same, np.arange(4), 4) is same


def _checkpoint_with_perturbed_params(config, tmp_path):
    """A workdir holding one checkpoint (step 0) without training: no step is compiled."""
    exp = experiment.build_experiment(config)
    state = experiment.initial_state(config, exp)
    state = state.replace(params=jax.tree.map(lambda p: p + 0.05, state.params))
    manager = checkpointing.make_manager(str(tmp_path), 3)
    meta = {"data_position": {}, "config": config.to_dict(), "boundaries": []}
    checkpointing.save(manager, state, meta)
    manager.wait_until_finished()


def test_tas_mode_writes_the_matrix_that_gradient_clustering_reads(tmp_path):
    config = make_tiny_config()
    config.analysis.tas_num_images = 8
    config.analysis.tas_num_timesteps = 10
    config.analysis.tas_projection_dim = 1024
    with pytest.raises(UserError, match="no checkpoint"):
        modes.task_affinity(config, str(tmp_path))
    _checkpoint_with_perturbed_params(config, tmp_path)
    message = modes.task_affinity(config, str(tmp_path))
    assert "TAS [1000, 1000] of steps [0]" in message
    tas = np.load(tmp_path / "tas.npy")
    np.testing.assert_allclose(np.diag(tas), 1.0)
    np.testing.assert_allclose(tas, tas.T)
    assert (tmp_path / "tas.png").stat().st_size > 0
    config.clustering.method, config.clustering.tas_path = "gradient", str(tmp_path / "tas.npy")
    boundaries = from_config.cluster_boundaries(config)
    assert boundaries.shape == (5, 2) and boundaries[0, 0] == 0 and boundaries[-1, 1] == 999
    config.analysis.tas_steps = (7,)
    with pytest.raises(UserError, match=r"no checkpoint \[7\]"):
        modes.task_affinity(config, str(tmp_path))


def test_tas_of_a_class_conditional_run(tmp_path):
    """The TAS images carry their labels into the conditional model's task losses."""
    config = make_tiny_config()
    config.data.num_classes = 10
    config.analysis.tas_num_images = 8
    config.analysis.tas_num_timesteps = 6
    config.analysis.tas_projection_dim = 0  # exact
    _checkpoint_with_perturbed_params(config, tmp_path)
    modes.task_affinity(config, str(tmp_path))
    tas = np.load(tmp_path / "tas.npy")
    assert np.all(np.isfinite(tas))
    np.testing.assert_allclose(np.diag(tas), 1.0, atol=1e-5)
