"""Schedules against closed forms, q_sample moments, losses, and loss weights at the extremes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmtl.diffusion import schedule as diffusion


def test_linear_schedule_closed_form():
    betas = diffusion.beta_schedule("linear", 1000)
    np.testing.assert_allclose(betas, 1e-4 + (0.02 - 1e-4) * np.arange(1000) / 999, rtol=1e-12)
    abar = diffusion.alphas_cumprod(betas)
    np.testing.assert_allclose(abar[2], (1 - betas[0]) * (1 - betas[1]) * (1 - betas[2]))
    # Known value of the DDPM schedule: abar_T is about 4.0e-5.
    assert 3.9e-5 < abar[-1] < 4.1e-5


def test_linear_schedule_keeps_end_points_for_other_T():
    betas = diffusion.beta_schedule("linear", 250)
    np.testing.assert_allclose([betas[0], betas[-1]], [4e-4, 0.08])


def test_scaled_linear_schedule_is_ldms():
    """LDM / SD: betas = linspace(sqrt(b0), sqrt(b1), T)^2; midpoint in closed form."""
    betas = diffusion.beta_schedule("scaled_linear", 1001, 0.0015, 0.0195)
    np.testing.assert_allclose([betas[0], betas[-1]], [0.0015, 0.0195], rtol=1e-12)
    np.testing.assert_allclose(betas[500], ((0.0015**0.5 + 0.0195**0.5) / 2) ** 2, rtol=1e-12)
    assert np.all(np.diff(np.sqrt(betas)) > 0) and np.allclose(np.diff(np.sqrt(betas), 2), 0)


def test_cosine_schedule_closed_form():
    T, s = 1000, 0.008
    abar = diffusion.alphas_cumprod(diffusion.beta_schedule("cosine", T))
    f = np.cos((np.arange(1, T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
    f0 = np.cos(s / (1 + s) * np.pi / 2) ** 2
    # The 0.999 clip only acts at the very end.
    np.testing.assert_allclose(abar[:-20], (f / f0)[:-20], rtol=1e-9)
    assert np.all(diffusion.beta_schedule("cosine", T) <= 0.999)


@pytest.mark.parametrize("schedule", diffusion.SCHEDULES)
def test_snr_and_log_snr_agree_and_decrease(schedule):
    abar = diffusion.alphas_cumprod(diffusion.beta_schedule(schedule, 1000))
    snr, log_snr = diffusion.snr(abar), diffusion.log_snr(abar)
    np.testing.assert_allclose(np.log(snr), log_snr, rtol=1e-9, atol=1e-9)
    assert np.all(np.diff(log_snr) < 0)


def test_q_sample_mean_and_variance(tiny_config):
    diff = diffusion.make_diffusion(tiny_config)
    n = 20000
    x0 = jnp.full((n, 1, 1, 1), 0.7)
    for t_value in (0, 300, 999):
        t = jnp.full((n,), t_value)
        noise = jax.random.normal(jax.random.PRNGKey(t_value), x0.shape)
        x_t = np.asarray(diffusion.q_sample(diff, x0, t, noise)).ravel()
        abar = float(diff.alphas_cumprod[t_value])
        assert abs(x_t.mean() - np.sqrt(abar) * 0.7) < 4 * np.sqrt((1 - abar) / n) + 1e-6
        assert abs(x_t.var() - (1 - abar)) < 0.05 * (1 - abar) + 1e-6


def test_eps_loss_is_per_example_mean_square():
    pred = jnp.arange(24.0).reshape(2, 3, 2, 2)
    noise = jnp.ones_like(pred)
    expected = ((np.arange(24.0).reshape(2, 12) - 1) ** 2).mean(axis=1)
    np.testing.assert_allclose(diffusion.eps_loss(pred, noise), expected)


def test_weightings_closed_forms():
    snr = np.array([0.5, 5.0, 50.0])
    np.testing.assert_allclose(diffusion.loss_weight(snr, "p2", 1.0, 0.5), 1 / np.sqrt(1 + snr))
    np.testing.assert_allclose(
        diffusion.loss_weight(snr, "min_snr", min_snr_gamma=5.0), [1.0, 1.0, 0.1]
    )
    np.testing.assert_array_equal(diffusion.loss_weight(snr, "none"), 1.0)


@pytest.mark.parametrize("weighting", diffusion.LOSS_WEIGHTINGS)
@pytest.mark.parametrize("schedule", diffusion.SCHEDULES)
def test_weights_finite_at_both_ends(weighting, schedule):
    abar = diffusion.alphas_cumprod(diffusion.beta_schedule(schedule, 1000))
    snr = np.concatenate([[0.0], diffusion.snr(abar), [np.inf]])
    weights = diffusion.loss_weight(snr, weighting, p2_k=1.0, p2_gamma=1.0, min_snr_gamma=5.0)
    assert np.all(np.isfinite(weights)) and np.all(weights >= 0)
    if weighting == "min_snr":
        assert weights[0] == 1.0 and weights[-1] == 0.0


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="schedule"):
        diffusion.beta_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="weighting"):
        diffusion.loss_weight(np.ones(3), "edm")
