"""The optax chain: the MTL method first (it turns per-cluster gradients into one), then AdamW.

Between them, either a clip of the combined gradient's global norm (train.grad_clip_norm) or, for
round 2's scale diagnostic (docs/results.md), a rescale of it to a fixed global norm
(train.fixed_grad_norm > 0): AdamW then sees a gradient whose scale does not drift, as Nash-MTL's
does not right after each solve, and a run's gain from a method can be told from its gain from
the scale.
"""

from __future__ import annotations

import optax

from diffmtl import mtl


def learning_rate_schedule(config) -> optax.Schedule:
    """Linear warm-up over `train.warmup_steps`, then constant `train.learning_rate`."""
    cfg = config.train
    if cfg.warmup_steps == 0:
        return optax.constant_schedule(cfg.learning_rate)
    return optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)


def make_optimizer(config, num_tasks: int) -> optax.GradientTransformationExtraArgs:
    """chain(MTL method, [clip by global norm | rescale to a fixed norm], AdamW); its state is
    (mtl_state, ...)."""
    cfg = config.train
    method = mtl.method(config.mtl.method)
    links = [method.make(num_tasks, config.mtl)]
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
