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
from diffmtl.mtl.methods import nash, pcgrad, uncertainty

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


# Methods that combine per-cluster gradients [k, ...] (continuous UW weights examples instead).
TASK_GRAD_METHODS = sorted(n for n, m in mtl.METHODS.items() if m.example_weights is None)


@pytest.mark.parametrize("name", TASK_GRAD_METHODS)
def test_output_is_param_shaped_and_finite(name):
    transform = mtl.METHODS[name].make(K, _mtl_config())
    updates, _ = run(transform, task_grads(0), jnp.arange(1.0, K + 1))
    chex.assert_trees_all_equal_shapes(updates, PARAMS)
    chex.assert_tree_all_finite(updates)


@pytest.mark.parametrize("name", TASK_GRAD_METHODS)
def test_identical_task_gradients_give_a_parallel_update(name):
    one = task_grads(1, k=1)
    same = jax.tree.map(lambda g: jnp.repeat(g, K, axis=0), one)
    transform = mtl.METHODS[name].make(K, _mtl_config())
    updates, _ = run(transform, same, jnp.ones(K))
    flat_u = jnp.concatenate([u.ravel() for u in jax.tree.leaves(updates)])
    flat_g = jnp.concatenate([g[0].ravel() for g in jax.tree.leaves(one)])
    cosine = flat_u @ flat_g / (jnp.linalg.norm(flat_u) * jnp.linalg.norm(flat_g))
    assert cosine == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["equal", "uw", "nash_mtl", "famo", "dwa", "rlw"])
def test_cheap_path_equals_task_gradient_path(name):
    """Param-shaped grad of sum_i w_i L_i == the method applied to [k, ...] gradients.

    (The other Gram-based methods have no cheap path.) The state first sees one full update, so
    that Nash-MTL's alpha is the solution for these gradients.
    """
    module = mtl.METHODS[name]
    transform = module.make(K, _mtl_config())
    grads = task_grads(2)
    _, state = run(transform, grads, jnp.ones(K))
    weighted = jax.tree.map(lambda g: jnp.tensordot(module.loss_weights(state), g, 1), grads)
    full, _ = run(transform, grads, jnp.ones(K), state)
    cheap, _ = run(transform, weighted, jnp.ones(K), state)
    chex.assert_trees_all_close(full, cheap, atol=1e-5)


def test_equal_weighting_is_the_mean_and_k1_is_the_gradient():
    grads = task_grads(3)
    updates, _ = run(mtl.equal(K), grads, jnp.ones(K))
    chex.assert_trees_all_close(updates, jax.tree.map(lambda g: g.mean(0), grads), atol=1e-6)
    single = task_grads(4, k=1)
    updates, _ = run(mtl.equal(1), single, jnp.ones(1))
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
    transform = mtl.uw(K, learning_rate=0.025)
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
    updates, state = run(mtl.uw(1), single, jnp.array([10.0]))
    chex.assert_trees_all_close(updates, jax.tree.map(lambda g: 0.5 * g[0], single), atol=1e-7)
    assert float(state.log_variances[0]) > 0  # L / k > 1 pushes s up (lower weight).


def test_uncertainty_weighting_frozen_after_n_steps_keeps_the_weights_of_step_n():
    single = task_grads(5, k=2)
    free, frozen = mtl.uw(2), mtl.uw(2, freeze_after=3)
    free_state, frozen_state = free.init(PARAMS), frozen.init(PARAMS)
    history = []
    for _ in range(6):
        losses = jnp.array([10.0, 0.01])
        free_state = run(free, single, losses, free_state)[1]
        frozen_state = run(frozen, single, losses, frozen_state)[1]
        history.append((free_state.log_variances, frozen_state.log_variances))
    for step, (free_s, frozen_s) in enumerate(history):
        expected = free_s if step < 3 else history[2][0]  # s of the 3rd update, kept after it
        chex.assert_trees_all_close(frozen_s, expected, atol=0.0)
    assert float(jnp.abs(history[-1][0] - history[2][0]).max()) > 0.01  # the free s moved on


def test_chain_with_adamw_traces_once():
    transform = optax.chain(mtl.uw(K), optax.adamw(1e-3))
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


def flat(tree):
    return jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])


def as_tree(vectors):
    """[k, 6] -> task gradients in the PARAMS layout."""
    vectors = jnp.asarray(vectors, jnp.float32)
    return {"w": vectors[:, :6].reshape(-1, 3, 2), "b": jnp.zeros((vectors.shape[0], 2))}


def test_pcgrad_leaves_orthogonal_gradients_unchanged():
    g = np.eye(6)[:3] * np.array([[1.0], [2.0], [3.0]])
    updates, state = run(mtl.pcgrad(3), as_tree(g), jnp.ones(3))
    np.testing.assert_allclose(updates["w"].ravel(), g.sum(0) / 3, atol=1e-6)
    assert int(state.extra) == 0


def test_pcgrad_k2_closed_form_and_no_conflict_left():
    g1, g2 = np.array([1.0, 0.5, 0, 0, 0, 0]), np.array([-1.0, 1.0, 0, 0, 0, 0])
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
    updates, state = run(mtl.pcgrad(2), as_tree(np.stack([g1, g2])), jnp.ones(2))
    u = np.asarray(updates["w"].ravel())
    np.testing.assert_allclose(u, (p1 + p2) / 2, atol=1e-6)
    assert u @ g1 >= -1e-6 and u @ g2 >= -1e-6
    assert int(state.extra) == 2


def test_pcgrad_coefficients_match_projecting_vectors():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(5, 6))
    orders = np.stack([rng.permutation(5) for _ in range(5)])
    weights, _ = pcgrad.projection_weights(jnp.asarray(g @ g.T), jnp.asarray(orders))
    projected = []
    for i in range(5):
        gi = g[i].copy()
        for j in orders[i]:
            if j != i and gi @ g[j] < 0:
                gi -= (gi @ g[j]) / (g[j] @ g[j]) * g[j]
        projected.append(gi)
    np.testing.assert_allclose(np.asarray(weights) @ g, np.mean(projected, 0), atol=1e-5)


@pytest.mark.parametrize("k", range(2, 11))
def test_nash_solves_the_bargaining_condition(k):
    rng = np.random.default_rng(k)
    for _ in range(5):
        a = rng.normal(size=(k, 3 * k)) * rng.lognormal(size=(k, 1))
        gram = jnp.asarray(a @ a.T, jnp.float32)
        alpha, ok, residual = nash.solve_alpha(gram, jnp.ones(k))
        alpha = np.asarray(alpha, np.float64)
        assert bool(ok) and np.all(alpha > 0)
        # The unnormalised system, as the reference implementation solves it.
        rel = np.linalg.norm(np.asarray(gram) @ alpha - 1 / alpha) / np.linalg.norm(1 / alpha)
        assert rel <= 1e-3, rel


def test_nash_equal_norm_orthogonal_gradients_get_equal_alpha():
    alpha, ok, _ = nash.solve_alpha(jnp.eye(4) * 3.0, jnp.array([0.2, 1.0, 5.0, 2.0]))
    assert bool(ok)
    np.testing.assert_allclose(alpha, np.full(4, alpha[0]), rtol=1e-4)


@pytest.mark.parametrize(
    "vectors",
    [
        [[1.0, 2, 0, 0, 0, 0], [-1.0, -2, 0, 0, 0, 0]],  # Exactly opposed.
        [[1.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0], [-1.0, -1.0, 0, 0, 0, 0]],  # Sum is 0.
    ],
)
def test_nash_failure_keeps_a_bounded_alpha_and_is_counted(vectors):
    k = len(vectors)
    transform = mtl.nash_mtl(k, max_norm=1.0)
    updates, state = run(transform, as_tree(np.array(vectors)), jnp.ones(k))
    chex.assert_tree_all_finite(updates)
    assert int(state.extra.num_failures) == 1
    np.testing.assert_array_equal(state.extra.alpha, np.ones(k))  # The previous (initial) one.
    assert float(optax.global_norm(updates)) <= 1.0 + 1e-6


def test_nash_update_has_norm_one_over_sqrt_k_is_clipped_and_weighted_by_alpha():
    """|sum_i alpha_i g_i / k| = sqrt(alpha'G alpha) / k = sqrt(k) / k whatever the gradients'
    scale (G alpha = 1/alpha); max_norm clips below that."""
    grads = jax.tree.map(lambda g: 100 * g, task_grads(7))
    updates, _ = run(mtl.nash_mtl(K, max_norm=1.0), grads, jnp.ones(K))
    assert float(optax.global_norm(updates)) == pytest.approx(1 / np.sqrt(K), rel=1e-3)
    updates, state = run(mtl.nash_mtl(K, max_norm=0.1), grads, jnp.ones(K))
    assert float(optax.global_norm(updates)) == pytest.approx(0.1, rel=1e-5)
    direction = jax.tree.map(lambda g: jnp.tensordot(state.extra.alpha / K, g, 1), grads)
    cosine = (
        flat(updates)
        @ flat(direction)
        / (jnp.linalg.norm(flat(updates)) * jnp.linalg.norm(flat(direction)))
    )
    assert cosine == pytest.approx(1.0, abs=1e-6)


def test_needs_task_grads_schedule():
    config = _mtl_config()
    config.nash_mtl.update_every = 3
    assert [mtl.method("nash_mtl").needs_task_grads(s, config) for s in range(7)] == [
        True,
        False,
        False,
        True,
        False,
        False,
        True,
    ]
    assert mtl.method("pcgrad").needs_task_grads(5, config)
    assert not mtl.method("uw").needs_task_grads(0, config)
