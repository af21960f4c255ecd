"""Discrete Gaussian diffusion: beta schedules, SNR, q_sample, per-example losses.

Every timestep t in 0..T-1 (0-based; the paper's t = 1..T) is one denoising task with
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps and SNR(t) = abar_t / (1 - abar_t).
Schedules are computed in float64 NumPy (the clustering DP sees them too) and handed to JAX
as float32 tables indexed by t.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("linear", "scaled_linear", "cosine")
LOSS_WEIGHTINGS = ("none", "p2", "min_snr")

_COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal (2021), eq. 17.
_MAX_BETA = 0.999  # Clip for the cosine schedule, as in improved DDPM.


def beta_schedule(
    name: str, num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
    """Returns betas [T] in float64.

    linear: evenly spaced from beta_start to beta_end, both scaled by 1000 / T as in ADM, so
      that the process is the DDPM one at T = 1000 and keeps its end points for other T.
    scaled_linear: sqrt(beta) evenly spaced from sqrt(beta_start) to sqrt(beta_end) (LDM's and
      Stable Diffusion's "linear", with their 0.00085 or 0.0015 .. 0.012 or 0.0195; no 1000 / T
      scaling).
    cosine: abar(t) = f(t) / f(0), f(t) = cos(((t / T) + s) / (1 + s) * pi / 2)^2, with
      beta_t = min(1 - abar(t + 1) / abar(t), 0.999).
    """
    if name == "linear":
        scale = 1000.0 / num_timesteps
        return np.linspace(beta_start * scale, beta_end * scale, num_timesteps, dtype=np.float64)
    if name == "scaled_linear":
        return np.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=np.float64) ** 2
    if name == "cosine":
        steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
        f = np.cos((steps + _COSINE_OFFSET) / (1 + _COSINE_OFFSET) * np.pi / 2) ** 2
        abar = f / f[0]
        return np.minimum(1.0 - abar[1:] / abar[:-1], _MAX_BETA)
    raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """abar_t = prod_{s <= t} (1 - beta_s), [T] float64."""
    return np.cumprod(1.0 - np.asarray(betas, np.float64))


def snr(abar: np.ndarray) -> np.ndarray:
    """SNR(t) = abar_t / (1 - abar_t), [T]."""
    return abar / (1.0 - abar)


def log_snr(abar: np.ndarray) -> np.ndarray:
    """log SNR(t) = log abar_t - log(1 - abar_t), [T], computed without forming the ratio."""
    return np.log(abar) - np.log1p(-abar)


def loss_weight(
    snr_values: np.ndarray,
    weighting: str,
    p2_k: float = 1.0,
    p2_gamma: float = 1.0,
    min_snr_gamma: float = 5.0,
) -> np.ndarray:
    """Per-timestep weight of the eps-prediction loss, finite for SNR in [0, inf].

    none: 1.
    p2 (Choi et al. 2022): 1 / (p2_k + SNR)^p2_gamma; tends to 0 as SNR -> inf, and is
      1 / p2_k^p2_gamma at SNR = 0.
    min_snr (Hang et al. 2023): min(SNR, gamma) / SNR, written as min(1, gamma / SNR) so that
      SNR = 0 gives 1 (its limit) and SNR = inf gives 0, with no 0 / 0.
    """
    snr_values = np.asarray(snr_values, np.float64)
    if weighting == "none":
        return np.ones_like(snr_values)
    if weighting == "p2":
        return 1.0 / (p2_k + snr_values) ** p2_gamma
    if weighting == "min_snr":
        with np.errstate(divide="ignore"):
            return np.minimum(1.0, min_snr_gamma / snr_values)
    raise ValueError(f"unknown loss weighting {weighting!r}; expected one of {LOSS_WEIGHTINGS}")


def posterior_log_variances(abar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two ends of a learned log-variance, float64 [S] each, for abar [S] of a process.

    The process may be the full one or a respaced one (beta_i = 1 - abar_i / abar_{i-1},
    abar_{-1} = 1). Returns log beta_i and log beta~_i, the posterior variance
    beta~_i = beta_i (1 - abar_{i-1}) / (1 - abar_i), whose first entry (0) is replaced by the
    second, as in improved DDPM (the model's variance at t = 0 only scales the decoder).
    """
    abar = np.asarray(abar, np.float64)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    betas = 1.0 - abar / abar_prev
    tilde = betas * (1.0 - abar_prev) / (1.0 - abar)
    tilde[0] = tilde[1] if len(tilde) > 1 else betas[0]
    return np.log(betas), np.log(tilde)


def learned_log_variance(v: jax.Array, log_beta: jax.Array, log_tilde: jax.Array) -> jax.Array:
    """Improved DDPM's variance: v in [-1, 1] interpolates log beta~ (v = -1) and log beta (v = 1).

    v [B, ...]; log_beta, log_tilde broadcastable against it. Returns log sigma^2, v's shape.
    """
    frac = (v + 1.0) / 2.0
    return frac * log_beta + (1.0 - frac) * log_tilde


def split_model_output(out: jax.Array, image_channels: int) -> tuple[jax.Array, jax.Array | None]:
    """[B, H, W, C] -> (eps, None); [B, H, W, 2C] (learned variance) -> (eps, v), [B, H, W, C]."""
    if out.shape[-1] == image_channels:
        return out, None
    return out[..., :image_channels], out[..., image_channels:]


class Diffusion(flax.struct.PyTreeNode):
    """The float32 tables a jitted step needs, all indexed by timestep t in 0..T-1.

    Attributes:
      betas: [T].
      alphas_cumprod: abar, [T].
      timestep_weights: weight of each timestep's eps loss (none / P2 / Min-SNR), [T].
      log_betas, log_posterior_variances: the learned variance's ends
        (posterior_log_variances), [T].
      learn_sigma: the model also predicts its variance (2C outputs) and the loss adds
        (T / 1000) L_vlb (losses.py). Static.
    """

    betas: jax.Array
    alphas_cumprod: jax.Array
    timestep_weights: jax.Array
    log_betas: jax.Array
    log_posterior_variances: jax.Array
    learn_sigma: bool = flax.struct.field(pytree_node=False, default=False)

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]


def schedule_alphas_cumprod(config) -> np.ndarray:
    """abar [T] (float64) of config.diffusion: what the model, the sampler and the DP all see."""
    cfg = config.diffusion
    return alphas_cumprod(
        beta_schedule(cfg.schedule, cfg.num_timesteps, cfg.beta_start, cfg.beta_end)
    )


def make_diffusion(config) -> Diffusion:
    """Builds the tables from `config.diffusion` (a ConfigDict)."""
    cfg = config.diffusion
    abar = schedule_alphas_cumprod(config)
    betas = 1.0 - abar / np.concatenate([[1.0], abar[:-1]])
    weights = loss_weight(snr(abar), cfg.loss_weighting, cfg.p2_k, cfg.p2_gamma, cfg.min_snr_gamma)
    log_betas, log_tilde = posterior_log_variances(abar)
    return Diffusion(
        *(jnp.asarray(a, jnp.float32) for a in (betas, abar, weights, log_betas, log_tilde)),
        learn_sigma=bool(cfg.learn_sigma),
    )


def _expand(values: jax.Array, like: jax.Array) -> jax.Array:
    """[B] -> [B, 1, ..., 1] broadcastable against `like` [B, ...]."""
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def q_sample(diffusion: Diffusion, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """Samples x_t ~ q(x_t | x_0): x0, noise [B, H, W, C], t [B] int -> [B, H, W, C]."""
    abar = _expand(diffusion.alphas_cumprod[t], x0)
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def eps_loss(eps_pred: jax.Array, noise: jax.Array) -> jax.Array:
    """Per-example mean squared error of the eps prediction: [B, ...] x2 -> [B]."""
    axes = tuple(range(1, noise.ndim))
    return jnp.mean(jnp.square(eps_pred.astype(jnp.float32) - noise), axis=axes)
