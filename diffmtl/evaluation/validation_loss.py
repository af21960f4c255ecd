"""Per-timestep validation loss on held-out images, per cluster and in total, with a plot.

Every call sees identical inputs: the same V held-out images, the same grid of G timesteps
(evenly spaced over 0..T-1) and, at grid point g, the same noise drawn from fold_in(key, t_g).
Two checkpoints are therefore compared on exactly the same denoising problems. The loss is
the unweighted L_t = E ||eps - eps_theta(x_t, t)||^2 (the task loss of timestep t; with a
learned variance the eps part only, without L_vlb).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh

from diffmtl import models, sharding
from diffmtl.analysis import plots
from diffmtl.diffusion import schedule
from diffmtl.diffusion.samplers import respaced_timesteps


def cluster_means(grid: np.ndarray, losses: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """Mean of losses [G] over the grid points in each interval of boundaries [k, 2]: [k].

    An interval without grid points gets NaN (use a finer grid).
    """
    inside = (grid[None, :] >= boundaries[:, :1]) & (grid[None, :] <= boundaries[:, 1:])  # [k, G]
    counts = inside.sum(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, (inside * losses[None, :]).sum(axis=1) / counts, np.nan)


def make_validation_loss(
    model: nn.Module,
    diffusion: schedule.Diffusion,
    mesh: Mesh,
    images: np.ndarray,
    num_timesteps: int,
    seed: int,
    labels: np.ndarray | None = None,
):
    """Returns (grid [G], losses(params) -> [G]) for held-out images [V, H, W, C] in [-1, 1]
    (and their labels [V] for a class-conditional model, unguided).

    V must be divisible by the mesh's batch shards.
    """
    grid = respaced_timesteps(diffusion.num_timesteps, num_timesteps)
    batch = sharding.batch_sharding(mesh, 0)
    x0 = jax.device_put(np.asarray(images, np.float32), batch)
    cond = None if labels is None else jax.device_put(np.asarray(labels, np.int32), batch)
    key = jax.random.PRNGKey(seed)

    @jax.jit
    def loss_at(params, x0, cond, t):  # [] -> mean over the V images of L_t
        noise = jax.random.normal(jax.random.fold_in(key, t), x0.shape)
        ts = jnp.full((x0.shape[0],), t, jnp.int32)
        x_t = schedule.q_sample(diffusion, x0, ts, noise)
        out = models.denoise(model, params, x_t, ts, cond)
        eps, _ = schedule.split_model_output(out, x0.shape[-1])
        return jnp.mean(schedule.eps_loss(eps, noise))

    def losses(params) -> np.ndarray:
        values = [loss_at(params, x0, cond, int(t)) for t in grid]
        return np.asarray(jax.device_get(values), np.float64)

    return grid, losses


def plot_validation_loss(path: str, grid, losses, boundaries, log_snr=None) -> None:
    """Writes a PNG of L_t against t (log scale), cluster edges dashed, log-SNR on a twin axis."""
    fig, ax = plots.new_figure((6, 3.5))
    ax.semilogy(grid, losses, marker=".", label="validation L_t")
    for start in np.asarray(boundaries)[1:, 0]:
        ax.axvline(start - 0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("timestep t (dashed: cluster edges)")
    ax.set_ylabel("eps MSE")
    if log_snr is not None:
        twin = ax.twinx()
        twin.plot(np.arange(len(log_snr)), log_snr, color="tab:orange", linewidth=0.8)
        twin.set_ylabel("log SNR", color="tab:orange")
    plots.save_figure(fig, path, dpi=120)
