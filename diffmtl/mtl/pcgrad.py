"""PCGrad (Yu et al. 2020) over timestep clusters, computed in the span of the task gradients.

For each i, g_i^pc starts at g_i and, for j != i in a random order, loses its component along
g_j whenever <g_i^pc, g_j> < 0: g_i^pc -= <g_i^pc, g_j> / ||g_j||^2 g_j (g_j the original).
The update is sum_i g_i^pc / k (the losses are already averaged over k).

Every g_i^pc stays a combination sum_l C[i, l] g_l of the original gradients, so the
projections run on the k x k coefficient matrix C with the Gram matrix G[i, j] = <g_i, g_j>,
and the parameters are touched twice: once for G, once for the final weighted sum with
weights C.sum(0) / k. The random orders come from a key in the state.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base


class PCGradState(NamedTuple):
    key: jax.Array  # [2] uint32 raw key for the projection orders.
    weights: jax.Array  # [k] weights of the last update (1/k before the first).
    num_projections: jax.Array  # [] int32, conflicting pairs projected in the last update.


def projection_weights(gram: jax.Array, orders: jax.Array) -> tuple[jax.Array, jax.Array]:
    """PCGrad in coefficient space.

    Args:
      gram: [k, k] Gram matrix of the task gradients.
      orders: [k, k] int; row i is the order in which task i meets the others (i is skipped).

    Returns:
      weights [k] with sum_i g_i^pc / k = sum_l weights[l] g_l, and the number of projections.
    """
    k = gram.shape[0]
    coeffs = jnp.eye(k, dtype=gram.dtype)
    tasks = jnp.arange(k)
    count = jnp.zeros((), jnp.int32)
    for position in range(k):
        j = orders[:, position]  # [k]: the task that each i meets now.
        dots = jnp.sum(coeffs * gram[:, j].T, axis=1)  # <g_i^pc, g_j> for every i.
        norms = gram[j, j]
        conflict = (dots < 0) & (j != tasks) & (norms > 0)
        step = jnp.where(conflict, dots / jnp.where(norms > 0, norms, 1.0), 0.0)
        coeffs = coeffs.at[tasks, j].add(-step)
        count += jnp.sum(conflict, dtype=jnp.int32)
    return coeffs.sum(axis=0) / k, count


def pcgrad(num_tasks: int, seed: int = 0) -> optax.GradientTransformationExtraArgs:
    """PCGrad over per-cluster gradients [k, ...]; it always needs them."""

    def init(params):
        del params
        return PCGradState(
            jax.random.PRNGKey(seed),
            jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32),
            jnp.zeros((), jnp.int32),
        )

    def update(updates, state, params=None, *, task_losses=None, **extra):
        del task_losses, extra
        if not base.has_task_axis(updates, params, num_tasks):
            raise ValueError("PCGrad needs per-cluster gradients [k, ...] at every step")
        key, order_key = jax.random.split(state.key)
        keys = jax.random.split(order_key, num_tasks)
        orders = jax.vmap(lambda kk: jax.random.permutation(kk, num_tasks))(keys)
        weights, count = projection_weights(base.gram_matrix(updates), orders)
        return base.weighted_sum(updates, weights), PCGradState(key, weights, count)

    return optax.GradientTransformationExtraArgs(init, update)


def make(num_tasks: int, mtl_config) -> optax.GradientTransformationExtraArgs:
    return pcgrad(num_tasks, mtl_config.pcgrad_seed)


def loss_weights(state: PCGradState) -> jax.Array:
    """[k] weights of the last update, in terms of the original task gradients."""
    return state.weights


def metrics(state: PCGradState) -> dict[str, jax.Array]:
    return {"pcgrad_projections": state.num_projections}


def needs_task_grads(step: int, mtl_config) -> bool:
    del step, mtl_config
    return True
