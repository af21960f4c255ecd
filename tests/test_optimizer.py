"""The optimizer chain: warm-up, the clip, and the fixed-norm rescale of round 2's diagnostic."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import fashion_mnist
from diffmtl.training import optimizer


def _config(**train):
    config = fashion_mnist.get_config("vanilla")
    config.train.warmup_steps = 0
    config.train.update(train)
    return config


def _updates(config, gradients):
    """AdamW's updates for a sequence of gradients of a 3-vector parameter."""
    params = jnp.zeros(3)
    chain = optimizer.make_optimizer(config, num_tasks=1)
    state = chain.init(params)
    outs = []
    for g in gradients:
        update, state = chain.update(jnp.asarray(g), state, params, task_losses=jnp.ones(1))
        outs.append(np.asarray(update))
    return outs


def test_warmup_is_linear_then_constant():
    config = _config(warmup_steps=10, learning_rate=1e-3)
    schedule = optimizer.learning_rate_schedule(config)
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(50)],
                               [0.0, 5e-4, 1e-3, 1e-3], rtol=1e-6)  # fmt: skip


def test_fixed_norm_makes_adam_blind_to_the_gradients_scale():
    """With the rescale, gradients g then 10 g give AdamW what g then g gives it; without it (the
    clip does not touch norms under 1) the second update differs."""
    g = np.array([0.03, -0.01, 0.02])
    fixed = _config(fixed_grad_norm=1.0)
    np.testing.assert_allclose(_updates(fixed, [g, 10 * g, 0.1 * g]), _updates(fixed, [g, g, g]),
                               rtol=1e-5)  # fmt: skip
    plain = _config()
    assert not np.allclose(_updates(plain, [g, 10 * g])[1], _updates(plain, [g, g])[1], rtol=1e-2)


def test_fixed_norm_replaces_the_clip():
    """chain(MTL method, norm record, rescale, AdamW): the rescale's state is empty and no clip
    follows it."""
    state = optimizer.make_optimizer(_config(fixed_grad_norm=1.0), num_tasks=1).init(jnp.zeros(3))
    assert len(state) == 4 and isinstance(state[2], optax.EmptyState)
    assert isinstance(state[1], optimizer.GradNormState)
    assert len(optimizer.make_optimizer(_config(), num_tasks=1).init(jnp.zeros(3))) == 4  # clip


def test_clip_bounds_a_large_gradient():
    """Adam's first update is lr * sign(g) whatever the clip; the second shows it: without the
    clip a 100x larger second gradient moves m/sqrt(v) towards its direction far more."""
    g1, g2 = np.array([0.1, 0.0, 0.0]), np.array([-100.0, 0.0, 0.0])
    clipped = _updates(_config(grad_clip_norm=1.0), [g1, g2])[1]
    free = _updates(_config(grad_clip_norm=0.0), [g1, g2])[1]
    assert np.isfinite(clipped).all() and np.isfinite(free).all()
    assert clipped[0] != pytest.approx(free[0], rel=1e-2)
