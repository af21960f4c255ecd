"""DDIM / DDPM samplers: the respaced posterior in closed form, exact-eps recovery, determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_tiny_config
from diffmtl import sharding
from diffmtl.data import images
from diffmtl.diffusion import guidance
from diffmtl.diffusion import samplers as sampling
from diffmtl.diffusion.schedule import make_diffusion, schedule_alphas_cumprod
from diffmtl.evaluation import evaluator as evaluate
from diffmtl.models import make_model


def test_respaced_timesteps_span_zero_to_t_minus_one():
    steps = sampling.respaced_timesteps(1000, 50)
    assert steps[0] == 0 and steps[-1] == 999 and len(steps) == 50
    assert np.all(np.diff(steps) > 0)
    np.testing.assert_array_equal(sampling.respaced_timesteps(10, 10), np.arange(10))


@pytest.mark.parametrize("num_steps", [7, 50, 1000])
def test_eta_one_is_the_posterior_of_the_respaced_process(num_steps):
    """x_{i-1} = a x0 + b eps + sigma z with eps = (x_i - sqrt(abar_i) x0) / sqrt(1 - abar_i)
    must be q(x_{i-1} | x_i, x0): mean sqrt(abar_{i-1}) beta_i / (1 - abar_i) x0 +
    sqrt(alpha_i) (1 - abar_{i-1}) / (1 - abar_i) x_i, variance beta~_i."""
    c = sampling.reverse_coefficients(schedule_alphas_cumprod(make_tiny_config()), num_steps, 1.0)
    beta = 1 - c.abar / c.abar_prev
    b = np.sqrt(1 - c.abar_prev - c.sigma**2)
    coef_xt = b / np.sqrt(1 - c.abar)
    coef_x0 = np.sqrt(c.abar_prev) - b * np.sqrt(c.abar / (1 - c.abar))
    np.testing.assert_allclose(coef_xt, np.sqrt(1 - beta) * (1 - c.abar_prev) / (1 - c.abar))
    np.testing.assert_allclose(coef_x0, np.sqrt(c.abar_prev) * beta / (1 - c.abar), atol=1e-12)
    np.testing.assert_allclose(c.sigma**2, beta * (1 - c.abar_prev) / (1 - c.abar))
    assert c.sigma[0] == 0.0  # The last step returns x0.


def _diffusion_and_mesh(devices):
    return make_diffusion(make_tiny_config()), sharding.make_mesh(devices=devices)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_exact_eps_of_a_one_point_dataset_returns_the_point(devices, eta):
    diffusion, mesh = _diffusion_and_mesh(devices)
    abar = diffusion.alphas_cumprod
    point = jnp.asarray(np.random.default_rng(0).uniform(-0.9, 0.9, (6, 6, 1)), jnp.float32)

    def exact_eps(x0, x, t, y=None):  # the eps that explains x_t given the only possible x0
        a = abar[t][:, None, None, None]
        return (x - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)

    sample = sampling.make_sampler(exact_eps, diffusion, 20, eta, (6, 6, 1), mesh)
    out = np.asarray(sample(point, 3, np.arange(8)))
    np.testing.assert_allclose(out, np.broadcast_to(point, out.shape), atol=2e-4)


@pytest.fixture(scope="module")
def tiny_sampler_parts():
    config = make_tiny_config()
    model = make_model(config, (28, 28, 1))
    x, t = jnp.zeros((1, 28, 28, 1)), jnp.zeros((1,), jnp.int32)
    params = jax.jit(lambda key: model.init(key, x, t, None, train=False))(jax.random.PRNGKey(0))
    # The output convolution starts at zero; perturb every weight so that eps depends on x.
    rng = np.random.default_rng(1)
    noisy = jax.tree.map(lambda p: p + 0.05 * rng.normal(size=p.shape), params["params"])
    return model, jax.tree.map(jnp.float32, noisy), make_diffusion(config)


def _generate(parts, devices, n, batch_size, seed, eta=0.0):
    model, params, diffusion = parts
    mesh = sharding.make_mesh(devices=devices)
    eps_fn = guidance.guided_model_fn(model)
    sample = sampling.make_sampler(eps_fn, diffusion, 3, eta, (28, 28, 1), mesh)
    return sampling.generate(sample, params, n, batch_size, seed)


def test_samples_are_deterministic_and_independent_of_batch_and_devices(
    tiny_sampler_parts, devices
):
    a = _generate(tiny_sampler_parts, devices, 8, 8, seed=1, eta=1.0)
    assert a.shape == (8, 28, 28, 1) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, _generate(tiny_sampler_parts, devices, 8, 8, 1, 1.0))
    in_halves = _generate(tiny_sampler_parts, devices, 6, 4, seed=1, eta=1.0)  # padded last batch
    np.testing.assert_allclose(in_halves.astype(int), a[:6].astype(int), atol=1)
    one_device = _generate(tiny_sampler_parts, devices[:1], 8, 8, seed=1, eta=1.0)
    np.testing.assert_allclose(one_device.astype(int), a.astype(int), atol=1)
    other_seed = _generate(tiny_sampler_parts, devices, 8, 8, seed=2, eta=1.0)
    assert np.mean(other_seed != a) > 0.5


def test_sample_files_follow_the_adm_layout(tmp_path):
    samples = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 1), dtype=np.uint8)
    path = evaluate.write_sample_files(str(tmp_path), samples, grid_size=4)
    assert path.endswith("samples_5x4x4x1.npz")
    with np.load(path) as data:
        np.testing.assert_array_equal(data["arr_0"], samples)
    assert (tmp_path / "samples_5x4x4x1.png").is_file()


@pytest.mark.parametrize("v", [-1.0, 0.3, 1.0])
def test_learned_variance_draws_with_the_model_variance(devices, v):
    """eps_theta = 0 and two respaced steps (s = 0, T-1), no clipping, in closed form:
    x_{T-1} = z_2, x_0' = sqrt(abar_0 / abar_1) z_2 + sigma_1 z_1 (the posterior mean keeps the x0
    estimate), output x_0' / sqrt(abar_0),
    log sigma_1^2 = (1+v)/2 log beta_1 + (1-v)/2 log beta~_1."""
    diffusion, mesh = _diffusion_and_mesh(devices)
    shape = (4, 4, 1)

    def model_fn(params, x, t, y=None):  # [eps, v]
        return jnp.concatenate([jnp.zeros_like(x), jnp.full_like(x, v)], axis=-1)

    sample = sampling.make_sampler(
        model_fn, diffusion, 2, 0.0, shape, mesh, clip_denoised=False, learned_variance=True
    )
    out = np.asarray(sample(None, 5, np.arange(4)), np.float64)

    abar = np.asarray(schedule_alphas_cumprod(make_tiny_config()))[[0, -1]]
    beta1 = 1 - abar[1] / abar[0]
    tilde1 = beta1 * (1 - abar[0]) / (1 - abar[1])
    sigma1 = np.exp(0.5 * ((1 + v) / 2 * np.log(beta1) + (1 - v) / 2 * np.log(tilde1)))
    keys = [jax.random.fold_in(jax.random.PRNGKey(5), j) for j in range(4)]
    z = [
        [np.asarray(jax.random.normal(jax.random.fold_in(k, i), shape)) for i in (1, 2)]
        for k in keys
    ]
    expected = np.stack(
        [(np.sqrt(abar[0] / abar[1]) * z2 + sigma1 * z1) / np.sqrt(abar[0]) for z1, z2 in z]
    )
    np.testing.assert_allclose(out, expected, rtol=2e-4, atol=2e-4)


def test_a_class_conditional_grid_has_one_row_per_class():
    """Sample i has label i mod C (the samplers'); the grid puts class c in row c."""
    samples = np.stack([np.full((2, 2, 1), i, np.uint8) for i in range(23)])  # 3 left over
    grid = images.image_grid(samples, padding=0, num_classes=10)[::2, ::2, 0]  # one pixel each
    np.testing.assert_array_equal(grid, np.arange(20).reshape(2, 10).T)
    assert images.image_grid(samples, padding=0).shape == (10, 10, 1)  # 5 x 5 when unlabelled
