"""The optax chain: the MTL method first (it turns per-cluster gradients into one), then AdamW.

Between them, either a clip of the combined gradient's global norm (train.grad_clip_norm) or, for
round 2's scale diagnostic (docs/results.md), a rescale of it to a fixed global norm
(train.fixed_grad_norm > 0): AdamW then sees a gradient whose scale does not drift, as Nash-MTL's
does not right after each solve, and a run's gain from a method can be told from its gain from
the scale.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl import mtl


def learning_rate_schedule(config) -> optax.Schedule:
    """Linear warm-up over `train.warmup_steps`, then constant `train.learning_rate`."""
    cfg = config.train
    if cfg.warmup_steps == 0:
        return optax.constant_schedule(cfg.learning_rate)
    return optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)


class GradNormState(NamedTuple):
    norm: jax.Array  # [] global norm of the combined gradient of the last step, before clipping


def record_global_norm() -> optax.GradientTransformationExtraArgs:
    """An identity link that keeps the global norm of what passes through in its state: placed
    after the MTL method, it is the norm the clip sees (logged as train/grad_norm)."""

    def init(params):
        del params
        return GradNormState(jnp.zeros((), jnp.float32))

    def update(updates, state, params=None, **extra):
        del state, params, extra
        return updates, GradNormState(optax.global_norm(updates).astype(jnp.float32))

    return optax.GradientTransformationExtraArgs(init, update)


def make_optimizer(config, num_tasks: int) -> optax.GradientTransformationExtraArgs:
    """chain(MTL method, norm record, [clip by global norm | rescale to a fixed norm], AdamW);
    its state is (mtl_state, GradNormState, ...)."""
    cfg = config.train
    method = mtl.method(config.mtl.method)
    links = [method.make(num_tasks, config.mtl), record_global_norm()]
    if cfg.fixed_grad_norm > 0:
        links.append(optax.normalize_by_update_norm(cfg.fixed_grad_norm, eps=1e-12))
    elif cfg.grad_clip_norm > 0 and not method.clips_updates:
        links.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    links.append(
        optax.adamw(
            learning_rate_schedule(config),
            b1=cfg.adam_b1,
            b2=cfg.adam_b2,
            eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay,
        )
    )
    return optax.chain(*links)


def mtl_state(opt_state):
    """The MTL method's state inside the chain's state (its first link)."""
    return opt_state[0]


def grad_norm(opt_state) -> jax.Array:
    """[] the global norm of the last step's combined gradient, before any clip (for Nash-MTL,
    which clips its own update to mtl.nash_mtl.max_norm, after that clip)."""
    return opt_state[1].norm


def clip_norm(config) -> float:
    """The global norm the chain clips to (0: no clip in the chain)."""
    method = mtl.method(config.mtl.method)
    clips = config.train.fixed_grad_norm == 0 and not method.clips_updates
    return float(config.train.grad_clip_norm) if clips else 0.0
