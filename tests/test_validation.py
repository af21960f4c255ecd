"""Per-timestep validation loss: a closed form with a zero model, fixed inputs, cluster means."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from conftest import make_tiny_config
from diffmtl import sharding
from diffmtl.diffusion.schedule import make_diffusion
from diffmtl.evaluation import validation_loss as validation


class ScaledIdentity(nn.Module):
    """eps_theta(x_t, t) = w x_t: w = 0 gives L_t = mean(noise^2)."""

    @nn.compact
    def __call__(self, x, t, cond=None, *, train=False):
        return self.param("w", nn.initializers.zeros, ()) * x


def _losses(devices, w, seed=0):
    images = np.random.default_rng(0).uniform(-1, 1, (8, 5, 5, 1)).astype(np.float32)
    mesh = sharding.make_mesh(devices=devices)
    grid, losses = validation.make_validation_loss(
        ScaledIdentity(), make_diffusion(make_tiny_config()), mesh, images, 6, seed
    )
    return grid, losses({"w": jnp.float32(w)})


def test_zero_model_loss_is_the_mean_squared_noise(devices):
    grid, losses = _losses(devices, 0.0)
    key = jax.random.PRNGKey(0)
    for t, loss in zip(grid, losses, strict=True):
        noise = jax.random.normal(jax.random.fold_in(key, int(t)), (8, 5, 5, 1))
        np.testing.assert_allclose(loss, float(jnp.mean(noise**2)), rtol=1e-5)


def test_inputs_are_fixed_across_calls_and_devices(devices):
    _, a = _losses(devices, 0.3)
    _, b = _losses(devices, 0.3)
    _, one = _losses(devices[:1], 0.3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(one, a, rtol=1e-5)
    assert not np.allclose(_losses(devices, 0.3, seed=1)[1], a)


def test_cluster_means_equal_brute_force():
    grid = np.array([0, 3, 5, 9, 12, 19])
    losses = np.arange(6, dtype=float)
    boundaries = np.array([[0, 4], [5, 6], [7, 7], [8, 19]])
    expected = [np.mean(losses[(grid >= lo) & (grid <= hi)]) for lo, hi in boundaries[[0, 1, 3]]]
    got = validation.cluster_means(grid, losses, boundaries)
    np.testing.assert_allclose(got[[0, 1, 3]], expected)
    assert np.isnan(got[2])  # no grid point in [7, 7]


class LabelScaled(nn.Module):
    """eps_theta(x_t, t, y) = w[y] x_t: the label picks the scale."""

    @nn.compact
    def __call__(self, x, t, cond, *, train=False):
        return self.param("w", nn.initializers.zeros, (2,))[cond][:, None, None, None] * x


def test_labels_reach_the_model_with_their_images(devices):
    """Closed form per image: L_t = mean_i mean((w[y_i] x_t,i - noise_i)^2)."""
    config = make_tiny_config()
    diffusion = make_diffusion(config)
    images = np.random.default_rng(0).uniform(-1, 1, (8, 5, 5, 1)).astype(np.float32)
    labels = np.arange(8) % 2
    mesh = sharding.make_mesh(devices=devices)
    grid, losses = validation.make_validation_loss(
        LabelScaled(), diffusion, mesh, images, 3, 0, labels=labels
    )
    w = jnp.array([0.0, 0.7])
    got = losses({"w": w})
    key = jax.random.PRNGKey(0)
    for t, loss in zip(grid, got, strict=True):
        noise = jax.random.normal(jax.random.fold_in(key, int(t)), images.shape)
        abar = diffusion.alphas_cumprod[int(t)]
        x_t = jnp.sqrt(abar) * images + jnp.sqrt(1 - abar) * noise
        expected = jnp.mean((w[labels][:, None, None, None] * x_t - noise) ** 2)
        np.testing.assert_allclose(loss, float(expected), rtol=1e-5)
