"""The MTL methods inside the jitted step: 4 devices equal 1, bfloat16 cluster gradients, and
that thirty steps of each method lower the loss. Split from test_train_step.py so that the two
heaviest step files run on different pytest-xdist workers.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_tiny_config
from diffmtl import config_validation
from diffmtl.data import pipeline as input_pipeline
from diffmtl.errors import UserError
from diffmtl.training import experiment, steps
from train_steps import assert_same_training, config_for, run_steps


@pytest.mark.slow
def test_nash_mtl_on_four_devices_equals_one_device(devices):
    """Two steps: Nash-MTL solves for alpha at step 0 and reuses it at step 1. The per-cluster
    gradients are pinned device-invariant (test_train_step.py); Nash-MTL is the method with
    solver state carried across steps, so it runs here in the real step on both."""
    method = "nash_mtl"
    config = config_for(method=method)
    config.mtl.nash_mtl.update_every = 2
    four = run_steps(config, devices)
    one = run_steps(config, devices[:1])
    assert_same_training(four, one)
    mtl_four, mtl_one = (r[0].opt_state[0] for r in (four, one))
    for a, b in zip(jax.tree.leaves(mtl_four), jax.tree.leaves(mtl_one), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert not np.allclose(four[1]["loss_weights"], 1 / 5)


@pytest.mark.parametrize(
    "method",
    [
        "equal",
        pytest.param("uw", marks=pytest.mark.slow),
        pytest.param("pcgrad", marks=pytest.mark.slow),
        pytest.param("nash_mtl", marks=pytest.mark.slow),
    ],
)
def test_thirty_steps_lower_the_loss(devices, method):
    config = make_tiny_config()
    config.model.dropout = 0.0
    config.mtl.method = method
    exp = experiment.build_experiment(config, devices)
    state = experiment.initial_state(config, exp)
    data = input_pipeline.GlobalBatchIterator(exp.source, config.seed, exp.layout, exp.mesh)
    loss_fn = steps.make_per_example_loss(exp.model, exp.diffusion, exp.mesh)
    fixed = next(data)["x0"][0]  # [k, N, 28, 28, 1]
    k, n = fixed.shape[:2]
    t = jnp.tile(jnp.linspace(0, 999, n).astype(jnp.int32), (k, 1))
    noise = jax.random.normal(jax.random.PRNGKey(7), fixed.shape)
    keys = jax.random.split(jax.random.PRNGKey(8), k * n).reshape(k, n, -1)

    @jax.jit
    def mean_loss(params):
        return jnp.mean(loss_fn(params, {"x0": fixed}, t, noise, keys))

    def eval_loss(params):
        return float(mean_loss(params))

    before = eval_loss(state.params)
    for step in range(30):
        with_task_grads = exp.method.needs_task_grads(step, config.mtl)
        state, _ = exp.train_step[with_task_grads](state, next(data))
    after = eval_loss(state.params)
    assert after < 0.8 * before, (before, after)  # Nash-MTL: updates clipped to norm 1


@pytest.mark.slow
def test_bfloat16_task_gradients_track_float32(devices):
    config = config_for(method="pcgrad")
    config.mtl.grad_dtype = "bfloat16"
    low = run_steps(config, devices[:1])
    high = run_steps(config_for(method="pcgrad"), devices[:1])
    for a, b in zip(jax.tree.leaves(low[0].params), jax.tree.leaves(high[0].params), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-3)  # Two AdamW steps of lr 1e-3.


@pytest.mark.parametrize("method", ["pcgrad", "uw"])
def test_class_conditional_steps_on_four_devices_equal_one_device(devices, method):
    """Labels and label dropout inside the per-cluster gradients (PCGrad) and the weighted
    loss (UW) of the real step."""
    config = config_for(method=method)
    config.data.num_classes, config.model.class_dropout = 10, 0.5
    four, one = run_steps(config, devices), run_steps(config, devices[:1])
    assert_same_training(four, one)
    unconditional = run_steps(config_for(method=method), devices[:1])
    assert not np.allclose(one[1]["task_losses"], unconditional[1]["task_losses"])


def test_normalized_weights_keep_the_ratios_and_drop_the_scale(devices):
    """UW at s = 0 weighs every cluster 1/(2k); normalized, 1/k: the equal-weights step exactly.
    Two steps in, UW's s has moved: normalized weights still sum to 1, in UW's ratios."""
    config = config_for(method="uw")
    config.mtl.normalize_weights = True
    state, metrics = run_steps(config, devices[:1], num_steps=1)
    equal_state, _ = run_steps(config_for(), devices[:1], num_steps=1)
    chex.assert_trees_all_equal(state.params, equal_state.params)
    _, metrics = run_steps(config, devices[:1], num_steps=3)
    free_state, free_metrics = run_steps(config_for(method="uw"), devices[:1], num_steps=3)
    weights, free = metrics["loss_weights"], free_metrics["loss_weights"]
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weights, free / free.sum(), rtol=1e-5)
    assert np.ptp(weights) > 0  # UW's ratios, not equal weights


def test_normalized_weights_need_a_loss_based_method():
    config = config_for(method="nash_mtl")
    config.mtl.normalize_weights = True
    with pytest.raises(UserError, match="normalize_weights=True needs a loss-based"):
        config_validation.validate(config, 4)
