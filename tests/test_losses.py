"""Learned variance: KL and decoder likelihood against numerical integration, the stop-gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from conftest import make_tiny_config
from diffmtl.diffusion import losses
from diffmtl.diffusion import schedule as diffusion_lib


def test_normal_kl_matches_numerical_integration():
    for m1, lv1, m2, lv2 in [(0.0, 0.0, 0.0, 0.0), (0.3, -1.0, -0.2, 0.5), (1.0, -4.0, 0.9, -3.0)]:
        p, q = stats.norm(m1, np.exp(lv1 / 2)), stats.norm(m2, np.exp(lv2 / 2))
        expected, _ = integrate.quad(
            lambda x, p=p, q=q: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -20, 20
        )
        got = float(losses.normal_kl(m1, lv1, m2, lv2))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mean,log_scale", [(0.0, -1.0), (0.37, -4.0), (-0.95, -2.5), (0.99, -6.0)])
def test_discretized_likelihood_is_a_distribution_over_the_256_levels(mean, log_scale):
    levels = np.linspace(-1.0, 1.0, 256, dtype=np.float32)
    log_p = np.asarray(
        losses.discretized_gaussian_log_likelihood(jnp.asarray(levels), mean, log_scale), np.float64
    )
    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, rtol=1e-4)
    # An interior level owns [x - 1/255, x + 1/255]; the first everything below its upper edge.
    normal = stats.norm(mean, np.exp(log_scale))
    for i in (1, 128, 200):
        expected = normal.cdf(levels[i] + 1 / 255) - normal.cdf(levels[i] - 1 / 255)
        if expected > 1e-6:
            np.testing.assert_allclose(np.exp(log_p[i]), expected, rtol=1e-3)
    np.testing.assert_allclose(log_p[0], normal.logcdf(-1 + 1 / 255), rtol=1e-4, atol=1e-6)


def _learned_sigma_diffusion():
    config = make_tiny_config()
    config.diffusion.learn_sigma = True
    return diffusion_lib.make_diffusion(config)


def test_posterior_variance_of_a_perfect_model_has_zero_kl():
    """eps_theta = eps and v = -1 (log sigma^2 = log beta~): p = q, so L_vlb,t = 0 for t > 0."""
    diffusion = _learned_sigma_diffusion()
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.uniform(-1, 1, (4, 6, 6, 1)), jnp.float32)
    noise = jnp.asarray(rng.normal(size=x0.shape), jnp.float32)
    t = jnp.array([1, 10, 500, 999])
    x_t = diffusion_lib.q_sample(diffusion, x0, t, noise)
    vlb = losses.vlb_terms(diffusion, x0, x_t, t, noise, -jnp.ones_like(x0))
    np.testing.assert_allclose(np.asarray(vlb), 0.0, atol=2e-3)
    # log sigma^2 = log beta: a mismatch where beta and beta~ differ (small t; they meet later).
    worse = np.asarray(losses.vlb_terms(diffusion, x0, x_t, t, noise, jnp.ones_like(x0)))
    assert np.all(worse[:2] > 1e-3) and np.all(worse >= np.asarray(vlb) - 1e-6)


def test_posterior_log_variances_clip_the_first_entry():
    abar = diffusion_lib.schedule_alphas_cumprod(make_tiny_config())
    log_beta, log_tilde = diffusion_lib.posterior_log_variances(abar)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    beta = 1 - abar / abar_prev
    np.testing.assert_allclose(log_beta, np.log(beta))
    np.testing.assert_allclose(log_tilde[1:], np.log((beta * (1 - abar_prev) / (1 - abar))[1:]))
    assert log_tilde[0] == log_tilde[1]


def test_vlb_trains_only_the_variance_and_mse_only_the_mean():
    diffusion = _learned_sigma_diffusion()
    plain = diffusion.replace(learn_sigma=False)
    rng = np.random.default_rng(1)
    x0 = jnp.asarray(rng.uniform(-1, 1, (3, 4, 4, 2)), jnp.float32)
    noise = jnp.asarray(rng.normal(size=x0.shape), jnp.float32)
    out = jnp.asarray(rng.normal(size=(3, 4, 4, 4)) * 0.5, jnp.float32)
    t = jnp.array([0, 40, 900])
    x_t = diffusion_lib.q_sample(diffusion, x0, t, noise)

    def total(d, o):
        return jnp.sum(losses.per_example_loss(d, o, x0, x_t, t, noise))

    grad_learned = np.asarray(jax.grad(lambda o: total(diffusion, o))(out))
    grad_mse = np.asarray(jax.grad(lambda o: total(plain, o[..., :2]))(out))
    np.testing.assert_allclose(grad_learned[..., :2], grad_mse[..., :2], rtol=1e-6)
    assert np.all(np.abs(grad_learned[..., 2:]).sum(axis=(1, 2, 3)) > 0)
    # The loss is the weighted MSE plus (T / 1000) L_vlb, with the decoder term at t = 0.
    vlb = losses.vlb_terms(diffusion, x0, x_t, t, out[..., :2], out[..., 2:])
    mse = diffusion_lib.eps_loss(out[..., :2], noise) * diffusion.timestep_weights[t]
    np.testing.assert_allclose(
        losses.per_example_loss(diffusion, out, x0, x_t, t, noise),
        mse + diffusion.num_timesteps / 1000 * vlb,
        rtol=1e-6,
    )
    assert float(vlb[0]) > 0
