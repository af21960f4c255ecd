"""DDIM and ancestral DDPM samplers with timestep respacing: jitted, sharded, deterministic by seed.

Respacing keeps S of the T timesteps, evenly spaced (s_0 = 0 < ... < s_{S-1} = T-1), and runs
the process on them with abar_i = abar[s_i]; the model sees the original timesteps. One reverse
step from x_{s_i}, with x0 predicted (and clipped to [-1, 1]) and eps recomputed from it:

    x_{s_{i-1}} = sqrt(abar_{i-1}) x0 + sqrt(1 - abar_{i-1} - sigma_i^2) eps + sigma_i z,
    sigma_i = eta sqrt((1 - abar_{i-1}) / (1 - abar_i)) sqrt(1 - abar_i / abar_{i-1})

(Song et al. 2021). eta = 0 is DDIM; eta = 1 is ancestral DDPM with the posterior variance
beta~ of the respaced process (Nichol & Dhariwal 2021), which tests/test_sampling.py checks
against the posterior q(x_{s_{i-1}} | x_{s_i}, x0) in closed form. abar_{-1} = 1, so the last
step returns x0.

With a learned variance (diffusion.learn_sigma, model output [eps, v]) the ancestral sampler keeps
the posterior mean (eta = 1) and draws with the model's variance instead: log sigma_i^2 =
learned_log_variance(v, log beta_i, log beta~_i) of the respaced process, as improved DDPM does.
DDIM ignores v.

Sample i of a seed draws all its noise from fold_in(PRNGKey(seed), i): a sample does not depend
on the batch it is drawn in nor on the number of devices. The reverse steps run as a host loop
over one jitted step (XLA:CPU runs convolutions inside device-side loops ~10x slower); on
accelerators the per-step dispatch is small next to a UNet forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from diffmtl import sharding
from diffmtl.data import images
from diffmtl.diffusion import guidance
from diffmtl.diffusion.schedule import (
    Diffusion,
    learned_log_variance,
    posterior_log_variances,
    split_model_output,
)

# model_fn(params, x_t [n, H, W, C], t [n] int32) -> eps [n, H, W, C], or [eps, v] [n, H, W, 2C].
SAMPLERS = ("ddim", "ddpm")


def respaced_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """S = num_steps increasing timesteps from 0 to T-1, evenly spaced: int32 [S]."""
    return np.unique(np.round(np.linspace(0, num_timesteps - 1, num_steps))).astype(np.int32)


class ReverseCoefficients(NamedTuple):
    """Per respaced step i ([S] each): t, abar_i, abar_{i-1}, sigma_i, log beta_i, log beta~_i."""

    timesteps: np.ndarray
    abar: np.ndarray
    abar_prev: np.ndarray
    sigma: np.ndarray
    log_beta: np.ndarray
    log_tilde: np.ndarray


def reverse_coefficients(alphas_cumprod: np.ndarray, num_steps: int, eta: float):
    """The respaced process of the module docstring, in float64: ReverseCoefficients."""
    alphas_cumprod = np.asarray(alphas_cumprod, np.float64)
    steps = respaced_timesteps(len(alphas_cumprod), num_steps)
    abar = alphas_cumprod[steps]
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    sigma = eta * np.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
    return ReverseCoefficients(steps, abar, abar_prev, sigma, *posterior_log_variances(abar))


def sample_labels(indices: np.ndarray, num_classes: int) -> np.ndarray:
    """int32 [n]: sample i's class label, i mod num_classes (balanced classes, the same whatever
    the batch or the devices)."""
    return (np.asarray(indices) % num_classes).astype(np.int32)


def _sample_keys(seed: int, indices: np.ndarray) -> np.ndarray:
    base = jax.random.PRNGKey(seed)
    return np.asarray(jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(indices)))


def make_sampler(
    model_fn: guidance.ModelFn,
    diffusion: Diffusion,
    num_steps: int,
    eta: float,
    example_shape: tuple[int, int, int],
    mesh: Mesh,
    clip_denoised: bool = True,
    learned_variance: bool = False,
    num_classes: int = 0,
) -> Callable[[object, int, np.ndarray], jax.Array]:
    """Returns sample(params, seed, indices [n]) -> x0 [n, H, W, C] in [-1, 1], batch-sharded.
    sample.reverse_step(params, x, keys, labels, i) is its one jitted program (x_{s_i} ->
    x_{s_{i-1}}, run num_steps times), exposed so that a dry run can compile it without data.

    n must be divisible by the mesh's batch shards; the samples are those numbered `indices`.
    learned_variance: ancestral steps with the model's variance (needs [eps, v]; eta is then 1).
    num_classes > 0: sample i has label i mod num_classes (balanced classes, the same whatever
    the batch or the devices), passed to model_fn (guidance.guided_model_fn guides with it).
    """
    eta = 1.0 if learned_variance else eta
    coef = reverse_coefficients(np.asarray(diffusion.alphas_cumprod), num_steps, eta)
    steps = jnp.asarray(coef.timesteps)
    abar, abar_prev, sigma, log_beta, log_tilde = (jnp.asarray(c, jnp.float32) for c in coef[1:])
    spec = sharding.batch_sharding(mesh, 0)

    def noise(keys, i):  # [n, H, W, C], sample j's from fold_in(keys[j], i)
        return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i), example_shape))(keys)

    @jax.jit
    def initial(keys):
        return noise(keys, len(coef.timesteps))

    @jax.jit
    def reverse_step(params, x, keys, labels, i):  # x_{s_i} -> x_{s_{i-1}}
        chex.assert_shape(x, (None, *example_shape))
        t = jnp.full((x.shape[0],), steps[i], jnp.int32)
        eps, v = split_model_output(model_fn(params, x, t, labels), example_shape[-1])
        chex.assert_equal_shape([eps, x])
        x0 = (x - jnp.sqrt(1.0 - abar[i]) * eps) / jnp.sqrt(abar[i])
        if clip_denoised:
            x0 = jnp.clip(x0, -1.0, 1.0)
        eps = (x - jnp.sqrt(abar[i]) * x0) / jnp.sqrt(1.0 - abar[i])
        direction = jnp.sqrt(jnp.maximum(1.0 - abar_prev[i] - sigma[i] ** 2, 0.0))
        std = sigma[i]
        if learned_variance:  # No noise at the last step, like sigma_0 = 0.
            log_var = learned_log_variance(v, log_beta[i], log_tilde[i])
            std = jnp.where(i > 0, jnp.exp(0.5 * log_var), 0.0)
        return jnp.sqrt(abar_prev[i]) * x0 + direction * eps + std * noise(keys, i)

    def sample(params, seed: int, indices: np.ndarray) -> jax.Array:
        keys = _sample_keys(seed, np.asarray(indices))
        keys = jax.make_array_from_callback(keys.shape, spec, lambda idx: keys[idx])
        labels = None
        if num_classes:
            host = sample_labels(indices, num_classes)
            labels = jax.make_array_from_callback(host.shape, spec, lambda idx: host[idx])
        x = initial(keys)
        for i in reversed(range(len(coef.timesteps))):
            x = reverse_step(params, x, keys, labels, i)
        return x

    sample.reverse_step = reverse_step
    return sample


def generate(
    sample, params, num_samples: int, batch_size: int, seed: int, decode=None
) -> np.ndarray:
    """Samples 0..num_samples-1 of `seed` in global batches of `batch_size`: uint8 [n, H, W, C].

    decode: model space -> pixels in [-1, 1] on the mesh (latent diffusion's decoder), applied
    to each batch where it lies. The last batch is padded with further sample numbers and cut,
    so every call compiles one shape.
    """
    out = []
    for start in range(0, num_samples, batch_size):
        x = sample(params, seed, np.arange(start, start + batch_size))
        if decode is not None:
            x = decode(x)
        out.append(images.to_uint8(sharding.to_host(x)))
    return np.concatenate(out)[:num_samples]
