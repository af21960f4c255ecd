"""The MTL library: properties of every Gram-based aggregator on sampled gradient matrices of
controlled rank (torchjd's test model), one closed form per method at k = 2, Nash-MTL's scale,
the per-task loss-scale invariances behind clustering.width_weighting, the loss-based methods,
and two new methods in the real step on 1 and 4 devices."""

import dataclasses
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmtl import mtl, tasks
from diffmtl.errors import UserError
from diffmtl.mtl import base as mtl_base
from diffmtl.mtl.methods import nash, uncertainty
from train_steps import assert_same_training, config_for, run_steps

GRAM = sorted(n for n, m in mtl.METHODS.items() if m.kind == "gram")
NON_CONFLICTING = ["mgda", "upgrad", "dualproj", "config"]
DIM = 7


def aggregate(name: str, vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(update [d], weights [k]) of method `name` on gradient rows vectors [k, d], through jit."""
    k = vectors.shape[0]
    record = mtl.method(name)
    transform = record.make(k, mtl.default_config())
    params = {"p": jnp.zeros(vectors.shape[1])}
    state = transform.init(params)
    update = jax.jit(lambda g, s: transform.update(g, s, params, task_losses=jnp.ones(k)))
    out, state = update({"p": jnp.asarray(vectors, jnp.float32)}, state)
    return np.asarray(out["p"], np.float64), np.asarray(record.loss_weights(state))


def sample_matrix(seed: int, k: int, rank: int, tiny_row: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(k, rank)) @ rng.normal(size=(rank, DIM))
    if tiny_row:
        matrix[0] *= 1e-4
    return matrix


CASES = [(0, 4, 4, False), (1, 4, 2, False), (2, 5, 5, True), (3, 3, 3, False), (4, 5, 3, True)]


@pytest.mark.parametrize("name", GRAM)
@pytest.mark.parametrize("seed, k, rank, tiny", CASES)
def test_weights_give_the_update_and_permuting_tasks_changes_nothing(name, seed, k, rank, tiny):
    vectors = sample_matrix(seed, k, rank, tiny)
    update, weights = aggregate(name, vectors)
    combined = weights @ vectors
    if mtl.method(name).clips_updates:  # Nash-MTL clips sum_i w_i g_i to global norm 1
        combined = combined * min(1.0, 1.0 / np.linalg.norm(combined))
    np.testing.assert_allclose(update, combined, atol=1e-4 * np.abs(vectors).max())
    # PCGrad's random orders depend on the task order; Nash-MTL's bargaining system has no
    # solution when the gradients are dependent (it keeps its previous alpha).
    if name != "pcgrad" and not (name == "nash_mtl" and rank < k):
        order = np.random.default_rng(seed).permutation(k)
        permuted, permuted_weights = aggregate(name, vectors[order])
        scale = np.linalg.norm(update) + 1e-3 * np.linalg.norm(vectors)
        np.testing.assert_allclose(permuted, update, atol=2e-3 * scale)
        if rank == k:  # with dependent gradients only the update is unique, not the weights
            bound = 2e-3 * np.abs(weights).max()
            np.testing.assert_allclose(permuted_weights, weights[order], atol=bound)


# Update scaling when every gradient is multiplied by s: linear, except Nash-MTL (invariant:
# alpha -> alpha / s).
@pytest.mark.parametrize("name", GRAM)
def test_scaling_behaviour(name):
    vectors = sample_matrix(5, 4, 4)
    update, _ = aggregate(name, vectors)
    scaled, _ = aggregate(name, 10.0 * vectors)
    expected = update if name == "nash_mtl" else 10.0 * update
    np.testing.assert_allclose(scaled, expected, rtol=2e-3, atol=1e-4 * np.linalg.norm(expected))


@pytest.mark.parametrize("name", NON_CONFLICTING)
@pytest.mark.parametrize("seed, k, rank, tiny", CASES)
def test_non_conflicting_methods_conflict_with_no_task(name, seed, k, rank, tiny):
    """<update, g_i> >= 0 for every i (cosine tolerance 1e-3). ConFIG only promises it for
    independent gradients (with dependent ones no direction has equal cosines to all)."""
    if name == "config" and rank < k:
        pytest.skip("ConFIG's least-squares direction may conflict when gradients are dependent")
    vectors = sample_matrix(seed, k, rank, tiny)
    update, _ = aggregate(name, vectors)
    norms = np.linalg.norm(vectors, axis=1)
    dots = vectors @ update
    tolerance = 1e-3 * norms * (np.linalg.norm(update) + 1e-3 * norms.mean())
    assert np.all(dots >= -tolerance), (dots, tolerance)


def test_mgda_is_zero_when_a_convex_combination_vanishes():
    a, b = np.eye(DIM)[0], np.eye(DIM)[1]
    vectors = np.stack([a + b, -2 * a, -3 * b])  # (a + b)/2 + ... : 6/11, 3/11, 2/11 -> 0
    update, weights = aggregate("mgda", vectors)
    assert np.linalg.norm(update) < 1e-3 * np.linalg.norm(vectors, axis=1).min()
    np.testing.assert_allclose(weights, [6 / 11, 3 / 11, 2 / 11], atol=1e-3)


def _two(g1, g2):
    return np.stack([np.pad(g1, (0, DIM - 2)), np.pad(g2, (0, DIM - 2))]).astype(float)


def test_k2_closed_forms():
    ortho = _two([3.0, 0.0], [0.0, 1.0])  # orthogonal, norms 3 and 1
    # MGDA: w1 = (G22 - G12) / (G11 + G22 - 2 G12) = 1 / 10.
    np.testing.assert_allclose(aggregate("mgda", ortho)[1], [0.1, 0.9], atol=1e-4)
    # IMTL-G: w ~ G^-1 |g| = (1/3, 1): equal projections on the unit gradients.
    np.testing.assert_allclose(aggregate("imtl_g", ortho)[1], [0.25, 0.75], atol=1e-5)
    # Aligned-MTL: B = diag(1/3, 1) (both aligned components of norm 1), weights B 1 / k.
    np.testing.assert_allclose(aggregate("aligned_mtl", ortho)[1], [1 / 6, 0.5], atol=1e-5)
    # ConFIG: e = (1, 1)/sqrt 2, magnitude (3 + 1)/sqrt 2: update (2, 2), / k = (1, 1).
    np.testing.assert_allclose(aggregate("config", ortho)[0][:2], [1.0, 1.0], atol=1e-4)
    # CAGrad on equal orthogonal gradients: x = (1/2, 1/2), g_x = g0: (1 + c) g0 / (1 + c^2).
    unit = _two([1.0, 0.0], [0.0, 1.0])
    np.testing.assert_allclose(aggregate("cagrad", unit)[1], [1.4 / 1.16 / 2] * 2, atol=1e-3)
    # UPGrad at k = 2 is PCGrad: g1 = (1, 0), g2 = (-1, 1) project to (.5, .5) and (0, 1).
    conflicting = _two([1.0, 0.0], [-1.0, 1.0])
    np.testing.assert_allclose(aggregate("upgrad", conflicting)[0][:2], [0.25, 0.75], atol=1e-3)
    # DualProj: the mean (-.5, .25) conflicts with g1; projected onto <v, g1> >= 0: (0, .25).
    np.testing.assert_allclose(
        aggregate("dualproj", _two([1.0, 0.0], [-2.0, 0.5]))[0][:2], [0.0, 0.25], atol=1e-3
    )
    # Nash-MTL: G = [[.8, .4], [.4, 3.2]] has G alpha = 1/alpha at alpha = (1, .5).
    alpha, ok, _ = nash.solve_alpha(jnp.array([[0.8, 0.4], [0.4, 3.2]]), jnp.ones(2))
    assert bool(ok)
    np.testing.assert_allclose(alpha, [1.0, 0.5], rtol=1e-3)


@pytest.mark.parametrize("c", [0.25, 4.0, 100.0])
def test_nash_alpha_on_c_identity_is_one_over_sqrt_c(c):
    """The reference implementation's scale: g = 2 I_2 (G = 4 I) gives alpha = (0.5, 0.5)."""
    alpha, ok, _ = nash.solve_alpha(c * jnp.eye(3), jnp.ones(3))
    assert bool(ok)
    np.testing.assert_allclose(alpha, np.full(3, 1 / np.sqrt(c)), rtol=1e-4)


def test_a_per_task_loss_scale_leaves_nash_and_uw_at_equilibrium_unchanged():
    """Why width_weighting changes equal weighting and PCGrad but not these two: scaling L_i by
    s_i scales g_i by s_i; Nash-MTL's alpha_i scales by 1/s_i (same update), and UW's
    equilibrium weight 0.5 / L_i (where d/ds_i = 0) times s_i L_i is the same 0.5."""
    vectors = sample_matrix(6, 4, 4)
    scales = np.array([1.31, 0.83, 0.87, 1.13])
    plain, _ = aggregate("nash_mtl", vectors)
    scaled, _ = aggregate("nash_mtl", scales[:, None] * vectors)
    np.testing.assert_allclose(scaled, plain, rtol=2e-3, atol=1e-5)
    losses = jnp.array([0.3, 0.05, 0.01, 0.002])
    for loss in (losses, losses * scales):
        s_star = jnp.log(loss / 4)  # log_variance_gradient vanishes here
        np.testing.assert_allclose(uncertainty.log_variance_gradient(s_star, loss), 0, atol=1e-6)
        state = uncertainty.UncertaintyWeightingState(s_star, None)
        np.testing.assert_allclose(uncertainty.loss_weights(state) * loss, 0.5, rtol=1e-5)


def test_width_weighting_makes_the_stratified_objective_vanilla_in_expectation():
    """E over t uniform in each cluster of sum_i (1/k) f_i L_i, f_i = k |I_i| / T, equals the
    mean over all T timesteps of L_t (vanilla's uniform t), for any L."""
    boundaries = np.array([[0, 152], [153, 393], [394, 623], [624, 822], [823, 999]])
    factors = np.asarray(tasks.width_factors(jnp.asarray(boundaries), 1000))
    np.testing.assert_allclose(factors, [0.765, 1.205, 1.15, 0.995, 0.885])
    loss_t = np.random.default_rng(0).lognormal(size=1000)
    cluster_means = [loss_t[a : b + 1].mean() for a, b in boundaries]
    np.testing.assert_allclose(np.mean(factors * cluster_means), loss_t.mean(), rtol=1e-6)
    uniform = np.array([[0, 199], [200, 399], [400, 599], [600, 799], [800, 999]])
    np.testing.assert_allclose(tasks.width_factors(jnp.asarray(uniform), 1000), 1.0)


def _loss_method(name, losses_per_step, k=3):
    record = mtl.method(name)
    config = mtl.default_config()
    config.dwa.window = 2
    transform = record.make(k, config)
    params = {"p": jnp.zeros(2)}
    state, weights = transform.init(params), []
    update = jax.jit(lambda g, s, losses: transform.update(g, s, params, task_losses=losses))
    for losses in losses_per_step:
        weights.append(np.asarray(record.loss_weights(state)))
        _, state = update({"p": jnp.ones(2)}, state, jnp.asarray(losses, jnp.float32))
    return np.array(weights)


def test_dwa_weights_follow_the_ratio_of_the_last_two_windows():
    losses = [[1.0, 1.0, 1.0]] * 2 + [[0.5, 1.0, 2.0]] * 2 + [[0.5, 1.0, 2.0]]
    weights = _loss_method("dwa", losses)
    np.testing.assert_allclose(weights[:4], 1 / 3)  # until two windows are complete
    ratio = np.array([0.5, 1.0, 2.0])
    expected = np.exp(ratio / 2) / np.exp(ratio / 2).sum()
    np.testing.assert_allclose(weights[4], expected, rtol=1e-5)


def test_famo_weights_sum_to_one_raise_the_slow_task_and_ignore_loss_scales():
    falling = [[1.0 * 0.9**i, 1.0 * 0.5**i, 1.0 * 0.5**i] for i in range(6)]
    weights = _loss_method("famo", falling)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    # Task 0 falls slowest: its logit grows, and (per unit of loss) its weight with it.
    per_loss = weights[-1] * np.array(falling[-2])
    assert per_loss[0] > per_loss[1]
    # A per-task loss scale s changes w to w / s up to a common factor (the same gradient
    # direction sum_i w_i s_i grad L_i).
    s = np.array([10.0, 0.1, 1.0])
    scaled = _loss_method("famo", [np.array(x) * s for x in falling])[1:] * s
    np.testing.assert_allclose(scaled / scaled.sum(axis=1, keepdims=True), weights[1:], rtol=1e-4)


def test_rlw_draws_fresh_softmax_normal_weights_reproducibly():
    a = _loss_method("rlw", [[1.0] * 3] * 4)
    b = _loss_method("rlw", [[2.0] * 3] * 4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-6)
    assert len({tuple(w) for w in a.round(6)}) == 4


def test_every_method_is_exported_by_name_with_its_options_declared_once():
    """The constructor's keyword defaults, config.mtl.<name> and the Options dataclass agree
    (the signature and the config are both generated from the dataclass), every option is
    documented, and each Gram-based method's weighting is exported as <name>_weights."""
    config = mtl.default_config()
    assert len(mtl.METHODS) == 16 and set(mtl.METHODS) <= set(mtl.__all__)
    for name, record in mtl.METHODS.items():
        assert getattr(mtl, name) is record.constructor
        assert record.formula and record.source and record.kind in ("gram", "loss")
        defaults = mtl_base.defaults(record.options)
        chex.assert_equal(config[name].to_dict() if name in config else {}, defaults)
        parameters = inspect.signature(record.constructor).parameters
        assert list(parameters)[0] == "num_tasks"
        assert {p: parameters[p].default for p in list(parameters)[1:]} == defaults
        assert all(f.metadata["doc"] for f in dataclasses.fields(record.options))
        if record.kind == "gram":
            assert getattr(mtl, f"{name}_weights") is record.weights, name
        else:
            assert record.weights is None


def test_options_out_of_range_or_unknown_are_refused_by_the_constructor_and_the_config():
    with pytest.raises(ValueError, match=r"c=-1 must be >= 0"):
        mtl.cagrad(3, c=-1)
    with pytest.raises(TypeError, match="radius"):
        mtl.cagrad(3, radius=0.4)
    config = mtl.default_config()
    config.nash_mtl.update_every = 0
    with pytest.raises(UserError, match=r"^mtl\.nash_mtl\.update_every=0 must be >= 1$"):
        mtl.check_config(config)


def test_continuous_uw_learns_the_log_of_the_expected_loss_per_noise_level():
    """At equilibrium exp(u(lambda)) = E[L | lambda] (EDM2): fed losses L(lambda) = exp(sin(
    lambda / 3)) on a log-SNR grid, u converges to sin(lambda / 3); the model's example weights
    are exp(-u)."""
    record = mtl.method("continuous_uw")
    config = mtl.default_config()
    config.continuous_uw.learning_rate = 0.05
    transform = record.make(1, config)
    params = {"p": jnp.zeros(2)}
    log_snr = jnp.linspace(-10.0, 9.0, 64)
    target = jnp.sin(log_snr / 3.0)
    update = jax.jit(
        lambda s: transform.update(
            {"p": jnp.ones(2)}, s, params, task_losses=jnp.ones(1),
            example_losses=jnp.exp(target), example_log_snr=log_snr,
        )[1]
    )  # fmt: skip
    state = transform.init(params)
    np.testing.assert_allclose(record.example_weights(state, log_snr), 1.0)  # u = 0 at start
    for _ in range(1500):
        state = update(state)
    from diffmtl.mtl.methods import continuous_uw

    u = continuous_uw.log_variance(state, log_snr)
    np.testing.assert_allclose(u, target, atol=0.05)
    np.testing.assert_allclose(record.example_weights(state, log_snr), jnp.exp(-u), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mgda", "famo", "continuous_uw"])
def test_new_methods_in_the_real_step_on_four_devices_equal_one(devices, method):
    config = config_for(method=method)
    if method == "continuous_uw":  # UW with T tasks: no clusters needed
        config.clustering.k, config.train.batch_size = 1, 8
    four, one = run_steps(config, devices, num_steps=3), run_steps(config, devices[:1], num_steps=3)
    assert_same_training(four, one)
    states = [r[0].opt_state[0] for r in (four, one)]
    for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    if method == "continuous_uw":  # u moved from 0: the examples are weighted by noise level
        assert float(jnp.abs(states[0].linear["w"]).max()) > 0
    else:
        assert not np.allclose(mtl.method(method).loss_weights(states[0]), 1 / 5)
