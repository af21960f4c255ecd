"""MTL transforms fed per-cluster gradients [k, ...] directly, through jit: properties and closed
forms (equal weighting, uncertainty weighting)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import make_tiny_config
from diffmtl import mtl
from diffmtl.mtl import uncertainty

K = 4
PARAMS = {"w": jnp.zeros((3, 2)), "b": jnp.zeros((2,))}


def task_grads(seed, k=K):
    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    return {"w": jax.random.normal(keys[0], (k, 3, 2)), "b": jax.random.normal(keys[1], (k, 2))}


def run(transform, grads, task_losses, state=None, params=PARAMS):
    state = transform.init(params) if state is None else state
    return jax.jit(lambda g, s, p, losses: transform.update(g, s, p, task_losses=losses))(
        grads, state, params, task_losses
    )


@pytest.mark.parametrize("name", sorted(mtl.METHODS))
def test_output_is_param_shaped_and_finite(name):
    transform = mtl.METHODS[name].make(K, _mtl_config())
    updates, _ = run(transform, task_grads(0), jnp.arange(1.0, K + 1))
    chex.assert_trees_all_equal_shapes(updates, PARAMS)
    chex.assert_tree_all_finite(updates)


@pytest.mark.parametrize("name", sorted(mtl.METHODS))
def test_identical_task_gradients_give_a_parallel_update(name):
    one = task_grads(1, k=1)
    same = jax.tree.map(lambda g: jnp.repeat(g, K, axis=0), one)
    transform = mtl.METHODS[name].make(K, _mtl_config())
    updates, _ = run(transform, same, jnp.ones(K))
    flat_u = jnp.concatenate([u.ravel() for u in jax.tree.leaves(updates)])
    flat_g = jnp.concatenate([g[0].ravel() for g in jax.tree.leaves(one)])
    cosine = flat_u @ flat_g / (jnp.linalg.norm(flat_u) * jnp.linalg.norm(flat_g))
    assert cosine == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", sorted(mtl.METHODS))
def test_cheap_path_equals_task_gradient_path(name):
    """Param-shaped grad of sum_i w_i L_i == the method applied to [k, ...] gradients."""
    module = mtl.METHODS[name]
    transform = module.make(K, _mtl_config())
    state = transform.init(PARAMS)
    grads = task_grads(2)
    weighted = jax.tree.map(lambda g: jnp.tensordot(module.loss_weights(state), g, 1), grads)
    full, _ = run(transform, grads, jnp.ones(K), state)
    cheap, _ = run(transform, weighted, jnp.ones(K), state)
    chex.assert_trees_all_close(full, cheap, atol=1e-6)


def test_equal_weighting_is_the_mean_and_k1_is_the_gradient():
    grads = task_grads(3)
    updates, _ = run(mtl.equal_weighting(K), grads, jnp.ones(K))
    chex.assert_trees_all_close(updates, jax.tree.map(lambda g: g.mean(0), grads), atol=1e-6)
    single = task_grads(4, k=1)
    updates, _ = run(mtl.equal_weighting(1), single, jnp.ones(1))
    chex.assert_trees_all_close(updates, jax.tree.map(lambda g: g[0], single), atol=1e-7)


def uw_objective(theta, s, a, b):
    """sum_i 0.5 (exp(-s_i) L_i / k + s_i) with L_i = ||a_i theta - b_i||^2."""
    losses = jnp.sum((jnp.einsum("kij,j->ki", a, theta) - b) ** 2, axis=1)  # [k]
    return jnp.sum(0.5 * (jnp.exp(-s) * losses / s.shape[0] + s)), losses


def test_uncertainty_weighting_matches_the_objective_gradients():
    a = jax.random.normal(jax.random.PRNGKey(0), (K, 5, 3))
    b = jax.random.normal(jax.random.PRNGKey(1), (K, 5))
    theta = jax.random.normal(jax.random.PRNGKey(2), (3,))
    s = jnp.array([0.3, -0.2, 0.0, 1.1])
    _, losses = uw_objective(theta, s, a, b)
    per_task = jax.vmap(jax.grad(lambda t, ai, bi: jnp.sum((ai @ t - bi) ** 2)), (None, 0, 0))(
        theta, a, b
    )  # [k, 3]
    transform = mtl.uncertainty_weighting(K, learning_rate=0.025)
    state = transform.init(theta)._replace(log_variances=s)
    state = state._replace(adam_state=optax.adam(0.025).init(s))
    updates, new_state = run(transform, per_task, losses, state, params=theta)

    grad_theta, grad_s = jax.grad(lambda t, v: uw_objective(t, v, a, b)[0], (0, 1))(theta, s)
    np.testing.assert_allclose(updates, grad_theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(uncertainty.log_variance_gradient(s, losses), grad_s, rtol=1e-5)
    adam = optax.adam(0.025)
    expected_s = s + adam.update(grad_s, adam.init(s), s)[0]
    np.testing.assert_allclose(new_state.log_variances, expected_s, rtol=1e-6)


def test_uncertainty_weighting_k1_scale_and_large_losses_raise_s():
    single = task_grads(5, k=1)
    updates, state = run(mtl.uncertainty_weighting(1), single, jnp.array([10.0]))
    chex.assert_trees_all_close(updates, jax.tree.map(lambda g: 0.5 * g[0], single), atol=1e-7)
    assert float(state.log_variances[0]) > 0  # L / k > 1 pushes s up (lower weight).


def test_chain_with_adamw_traces_once():
    transform = optax.chain(mtl.uncertainty_weighting(K), optax.adamw(1e-3))
    state = transform.init(PARAMS)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(grads, state, params, losses):
        updates, state = transform.update(grads, state, params, task_losses=losses)
        return optax.apply_updates(params, updates), state

    params = PARAMS
    for seed in range(3):
        params, state = step(task_grads(seed), state, params, jnp.ones(K))
    chex.assert_tree_all_finite(params)


def _mtl_config():
    return make_tiny_config().mtl
