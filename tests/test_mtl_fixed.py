"""mtl.method='fixed': constant per-cluster weights from the config, by closed form; its config
checks; with 1/k weights it trains exactly as equal weighting."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffmtl import config_validation, mtl
from diffmtl.errors import UserError
from diffmtl.mtl.methods import fixed
from train_steps import assert_same_training, config_for, run_steps


@pytest.mark.parametrize(
    ("weights", "normalize", "expected"),
    [((1.0, 3.0, 0.0), False, (1.0, 3.0, 0.0)), ((1.0, 3.0, 0.0), True, (0.25, 0.75, 0.0)),
     ((), False, (1 / 3, 1 / 3, 1 / 3))],
)  # fmt: skip
def test_fixed_weights_combine_per_cluster_gradients_by_closed_form(weights, normalize, expected):
    grads = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)}
    params = {"w": jnp.zeros(4)}
    transform = fixed.fixed(3, weights=weights, normalize=normalize)
    state = transform.init(params)
    update, state = transform.update(grads, state, params, task_losses=jnp.ones(3))
    np.testing.assert_allclose(
        update["w"], np.asarray(expected) @ np.asarray(grads["w"]), rtol=1e-6
    )
    np.testing.assert_allclose(mtl.METHODS["fixed"].loss_weights(state), expected, rtol=1e-6)
    weighted = {"w": jnp.ones(4)}  # the gradient of sum_i w_i L_i passes through
    assert transform.update(weighted, state, params, task_losses=jnp.ones(3))[0] is weighted


def test_fixed_weights_must_be_one_per_cluster_and_non_negative():
    config = config_for(method="fixed")
    config.mtl.fixed.weights = (1.0, 2.0)
    with pytest.raises(UserError, match=r"mtl.fixed.weights=\(1.0, 2.0\) must hold clustering.k=5"):
        config_validation.validate(config, 1, check_files=False)
    config.mtl.fixed.weights = (1.0, -1.0, 0.0, 0.0, 0.0)
    with pytest.raises(UserError, match="mtl.fixed.weights=.* must be"):
        config_validation.validate(config, 1, check_files=False)


def test_fixed_at_one_over_k_trains_as_equal_weighting(devices):
    config = config_for(method="fixed")
    config.mtl.fixed.weights = (0.2,) * 5
    assert_same_training(run_steps(config, devices[:1]), run_steps(config_for(), devices[:1]))
