"""Ancestral DDPM sampling with timestep respacing (a simple sampler for training-time grids).

Respacing keeps S of the T timesteps, evenly spaced, and derives the process on them from abar:
beta'_i = 1 - abar[s_i] / abar[s_{i-1}] (Nichol & Dhariwal 2021). The model sees the original
timestep indices. The evaluation issue adds DDIM and sharded sampling at scale.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from diffmtl.diffusion import Diffusion


def respaced_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """S = num_steps increasing timesteps from 0 to T-1, evenly spaced: int32 [S]."""
    return np.unique(np.round(np.linspace(0, num_timesteps - 1, num_steps))).astype(np.int32)


def make_ddpm_sampler(
    model: nn.Module, diffusion: Diffusion, num_steps: int, shape: tuple[int, ...]
):
    """Returns sample(params, key) -> x_0 [n, H, W, C] in [-1, 1]; shape is [n, H, W, C].

    The reverse steps run as a host loop over one jitted step: XLA:CPU runs convolutions
    inside a device-side loop about 10x slower (see steps.accumulate_gradients).
    """
    steps = jnp.asarray(respaced_timesteps(diffusion.num_timesteps, num_steps))
    abar = diffusion.alphas_cumprod[steps]  # [S]
    abar_prev = jnp.concatenate([jnp.ones((1,)), abar[:-1]])
    betas = 1.0 - abar / abar_prev
    posterior_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    coef_x0 = jnp.sqrt(abar_prev) * betas / (1.0 - abar)
    coef_xt = jnp.sqrt(1.0 - betas) * (1.0 - abar_prev) / (1.0 - abar)

    @jax.jit
    def denoise(params, x, i, key):  # One reverse step from x_{s_i} to x_{s_{i-1}}.
        t = jnp.full((shape[0],), steps[i], jnp.int32)
        eps = model.apply({"params": params}, x, t, train=False)
        x0 = jnp.clip((x - jnp.sqrt(1.0 - abar[i]) * eps) / jnp.sqrt(abar[i]), -1.0, 1.0)
        mean = coef_x0[i] * x0 + coef_xt[i] * x
        z = jax.random.normal(jax.random.fold_in(key, i), shape)
        return mean + jnp.where(i > 0, jnp.sqrt(posterior_var[i]), 0.0) * z

    def sample(params, key):
        init_key, loop_key = jax.random.split(key)
        x = jax.random.normal(init_key, shape)
        for i in reversed(range(steps.shape[0])):
            x = denoise(params, x, i, loop_key)
        return x

    return sample
