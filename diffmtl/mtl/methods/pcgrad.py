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

import dataclasses

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base


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


def task_orders(key: jax.Array, num_tasks: int) -> jax.Array:
    """[k, k] int: row i is a random permutation of the tasks, the order in which task i meets
    the others at this step (each task its own, drawn anew every step)."""
    keys = jax.random.split(key, num_tasks)
    return jax.vmap(lambda kk: jax.random.permutation(kk, num_tasks))(keys)


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
    seed: int = base.option(
        0,
        "an integer >= 0",
        lambda v: isinstance(v, int) and v >= 0,
        "Seeds the random projection orders.",
    )


def pcgrad_weights(
    gram: jax.Array, task_losses: jax.Array | None = None, *, key: jax.Array
) -> jax.Array:
    """[k] weights of PCGrad's update for G [k, k], with the projection orders drawn from
    `key` (the pure weighting; the transform draws a new key every step)."""
    del task_losses
    return projection_weights(gram, task_orders(key, gram.shape[0]))[0]


@base.takes_options(Options)
def pcgrad(num_tasks: int, *, options) -> optax.GradientTransformationExtraArgs:
    """PCGrad over per-cluster gradients [k, ...] (it needs them at every step); the state's
    extra is the number of projections of the last update."""
    seed = options.seed

    def weights_fn(gram, task_losses, key, extra):
        del task_losses, extra
        return projection_weights(gram, task_orders(key, num_tasks))

    return base.gram_weighting(num_tasks, weights_fn, jnp.zeros((), jnp.int32), seed)


METHOD = base.Method(
    name="pcgrad",
    constructor=pcgrad,
    options=Options,
    loss_weights=base.last_weights,
    task_grads_on=base.always_needs_task_grads,
    metrics=lambda state: {"pcgrad_projections": state.extra},
    kind="gram",
    weights=pcgrad_weights,
    formula="g_i -= <g_i, g_j>/|g_j|^2 g_j on conflict, random order; mean",
    source="Yu et al. 2020",
)
