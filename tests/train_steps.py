"""Shared by the training-step tests: the tiny config at B = 100 and a few jitted steps."""

import jax
import numpy as np

from conftest import make_tiny_config
from diffmtl.data import pipeline as input_pipeline
from diffmtl.training import experiment

ATOL = 1e-5


def config_for(num_microbatches=1, microbatch_loop="unroll", method="equal"):
    config = make_tiny_config()
    config.mtl.method = method
    config.train.batch_size = 100  # k = 5 clusters of 20: N = 20 / M, divisible by 4 devices.
    config.train.num_microbatches = num_microbatches
    config.train.microbatch_loop = microbatch_loop
    return config


def run_steps(config, devices, num_steps=2, with_task_grads=None):
    """Trains num_steps; with_task_grads=None asks the MTL method, as the training loop does."""
    exp = experiment.build_experiment(config, devices)
    state = experiment.initial_state(config, exp)
    data = input_pipeline.GlobalBatchIterator(exp.source, config.seed, exp.layout, exp.mesh)
    metrics = None  # num_steps = 0: the initial state
    for step in range(num_steps):
        flag = with_task_grads
        if flag is None:
            flag = exp.method.needs_task_grads(step, config.mtl)
        state, metrics = exp.train_step[flag](state, next(data))
    return jax.device_get(state), jax.device_get(metrics)


def assert_same_training(result, reference):
    (state, metrics), (ref_state, ref_metrics) = result, reference
    np.testing.assert_allclose(metrics["task_losses"], ref_metrics["task_losses"], atol=ATOL)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params), strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL)
    for a, b in zip(
        jax.tree.leaves(state.ema_params), jax.tree.leaves(ref_state.ema_params), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=ATOL)
    assert int(state.step) == int(ref_state.step)
