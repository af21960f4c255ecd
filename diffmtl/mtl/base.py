"""What every MTL method shares: telling the two gradient forms apart and combining them.

A method's update receives either per-cluster gradients (every leaf has a leading task axis
[k, ...]) or one param-shaped gradient of the weighted loss sum_i w_i L_i. The two are told
apart by shape at trace time against `params`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def has_task_axis(updates, params, num_tasks: int) -> bool:
    """True when every leaf of `updates` is [k, *param.shape], False when it is param-shaped."""
    if params is None:
        raise ValueError("MTL methods need `params` to tell per-cluster gradients apart")
    pairs = zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True)
    flags = {u.shape == (num_tasks, *p.shape) for u, p in pairs}
    if len(flags) != 1:
        raise ValueError("updates mix per-cluster [k, ...] and param-shaped leaves")
    return flags.pop()


def weighted_sum(task_grads, weights: jax.Array):
    """sum_i w_i g_i over the leading task axis: leaves [k, ...], weights [k] -> leaves [...].

    Accumulated in float32 whatever the dtype of the task gradients (mtl.grad_dtype).
    """

    def combine(g):
        return jnp.tensordot(weights.astype(jnp.float32), g.astype(jnp.float32), axes=1)

    return jax.tree.map(combine, task_grads)


def gram_matrix(task_grads, other_grads=None) -> jax.Array:
    """G[i, j] = <g_i, h_j> summed over leaves [k, ...] (h = other_grads [m, ...], default g)
    -> [k, m] float32.

    Under parameter sharding each leaf's product is a per-shard dot product plus a reduction.
    """
    others = task_grads if other_grads is None else other_grads

    def leaf_gram(g, h):
        flat_g = g.reshape(g.shape[0], -1).astype(jnp.float32)
        flat_h = h.reshape(h.shape[0], -1).astype(jnp.float32)
        return jnp.dot(flat_g, flat_h.T, precision=jax.lax.Precision.HIGHEST)

    pairs = zip(jax.tree.leaves(task_grads), jax.tree.leaves(others), strict=True)
    return sum(leaf_gram(g, h) for g, h in pairs)


def no_metrics(state) -> dict:
    """For methods with no scalars beyond the loss weights (which the step logs for all)."""
    del state
    return {}


def never_needs_task_grads(step: int, mtl_config) -> bool:
    """For methods that only weight the losses: the step takes one gradient of sum_i w_i L_i."""
    del step, mtl_config
    return False
