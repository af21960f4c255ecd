"""Training loss per example: weighted eps MSE, plus (T / 1000) L_vlb with a learned variance.

With diffusion.learn_sigma the model outputs [eps, v] (2C channels) and, as in improved DDPM and
the ADM / P2-weighting codebases, the loss is

    L_t = w_t ||eps - eps_theta||^2 / D + (T / 1000) L_vlb,t

where L_vlb,t (bits per dimension) is KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) for t > 0 and
the discretized Gaussian decoder's -log p(x0 | x_1) at t = 0, computed with the mean of p from a
stop-gradient eps: the VLB trains only the variance, the MSE only the mean. The P2 / Min-SNR
weight w_t scales the MSE only. The per-cluster loss vector averages these per-example losses,
so the VLB is part of every task's loss, as in the authors' code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, ndtr

from diffmtl.diffusion import schedule

_BIN_HALF_WIDTH = 1.0 / 255.0  # Pixels are 256 levels on [-1, 1]: bins of width 2 / 255.
_EDGE = 0.999  # x0 beyond this is the first or last level: its bin extends to infinity.


def normal_kl(mean1, log_var1, mean2, log_var2) -> jax.Array:
    """KL(N(mean1, e^log_var1) || N(mean2, e^log_var2)) elementwise (nats), broadcast shapes."""
    return 0.5 * (
        log_var2
        - log_var1
        - 1.0
        + jnp.exp(log_var1 - log_var2)
        + jnp.square(mean1 - mean2) * jnp.exp(-log_var2)
    )


def discretized_gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_scale: jax.Array):
    """log P(x) (nats) of 8-bit pixel values x in [-1, 1] under N(mean, e^(2 log_scale)).

    Elementwise over broadcast shapes.

    Each of the 256 levels owns the interval of width 2/255 around it; the first and last levels
    own everything below and above, so the 256 probabilities sum to 1.
    """
    upper = (x - mean + _BIN_HALF_WIDTH) * jnp.exp(-log_scale)
    lower = (x - mean - _BIN_HALF_WIDTH) * jnp.exp(-log_scale)
    log_below_upper = log_ndtr(upper)  # log Phi(upper): the first level's probability.
    log_above_lower = log_ndtr(-lower)  # log (1 - Phi(lower)): the last level's probability.
    log_inside = jnp.log(jnp.maximum(ndtr(upper) - ndtr(lower), 1e-12))
    return jnp.where(x < -_EDGE, log_below_upper, jnp.where(x > _EDGE, log_above_lower, log_inside))


def _posterior_mean(diffusion, x0, x_t, t):
    """Mean of q(x_{t-1} | x_t, x0) [B, H, W, C] for x0, x_t [B, H, W, C], t [B]."""
    abar = diffusion.alphas_cumprod
    abar_prev = jnp.concatenate([jnp.ones((1,), abar.dtype), abar[:-1]])
    expand = lambda a: a[t].reshape((-1,) + (1,) * (x0.ndim - 1))  # noqa: E731
    beta, abar_t, abar_p = expand(diffusion.betas), expand(abar), expand(abar_prev)
    coef_x0 = beta * jnp.sqrt(abar_p) / (1.0 - abar_t)
    coef_xt = (1.0 - abar_p) * jnp.sqrt(1.0 - beta) / (1.0 - abar_t)
    return coef_x0 * x0 + coef_xt * x_t


def vlb_terms(diffusion, x0, x_t, t, eps, v) -> jax.Array:
    """L_vlb,t per example in bits per dimension: x0, x_t, eps, v [B, H, W, C], t [B] -> [B].

    eps should already carry a stop-gradient (the VLB then trains only v).
    """
    shape = (-1,) + (1,) * (x0.ndim - 1)
    abar_t = diffusion.alphas_cumprod[t].reshape(shape)
    x0_pred = (x_t - jnp.sqrt(1.0 - abar_t) * eps) / jnp.sqrt(abar_t)
    model_mean = _posterior_mean(diffusion, x0_pred, x_t, t)
    log_tilde = diffusion.log_posterior_variances[t].reshape(shape)
    model_log_var = schedule.learned_log_variance(
        v, diffusion.log_betas[t].reshape(shape), log_tilde
    )
    true_mean = _posterior_mean(diffusion, x0, x_t, t)
    axes = tuple(range(1, x0.ndim))
    kl = jnp.mean(normal_kl(true_mean, log_tilde, model_mean, model_log_var), axis=axes)
    decoder_nll = -jnp.mean(
        discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var), axis=axes
    )
    return jnp.where(t == 0, decoder_nll, kl) / np.log(2.0)


def per_example_loss(diffusion, out, x0, x_t, t, noise) -> jax.Array:
    """The training loss of the module docstring: out [B, H, W, C or 2C], t [B] -> [B] float32."""
    eps, v = schedule.split_model_output(out.astype(jnp.float32), x0.shape[-1])
    loss = schedule.eps_loss(eps, noise) * diffusion.timestep_weights[t]
    if diffusion.learn_sigma:
        vlb_weight = diffusion.num_timesteps / 1000.0
        loss = loss + vlb_weight * vlb_terms(diffusion, x0, x_t, t, jax.lax.stop_gradient(eps), v)
    return loss
