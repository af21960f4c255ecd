"""Oracles for stages that self-consistency tests (1 vs 4 devices, resumed vs uninterrupted)
cannot check, because a bug there is wrong the same way everywhere: the EMA against its
formula by hand, one DDIM / DDPM reverse step (clipping active, learned variance) against a
float64 NumPy transcription, guidance with a learned variance in closed form, the sampled class
labels, the flips against the documented per-stream mask, and PCGrad against a NumPy PCGrad with
the same random order (k = 3, where the order changes the result). Each catches one of the
mutations listed in tools/mutants.py."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from diffmtl import sharding
from diffmtl.data import pipeline as input_pipeline
from diffmtl.diffusion import guidance, samplers, schedule
from diffmtl.mtl.methods import pcgrad
from diffmtl.training.train_state import ema_decay
from train_steps import config_for, run_steps


def test_ema_after_one_and_two_steps_by_hand(devices):
    config = config_for()
    config.train.ema_decay = 0.5  # reached at step 8; steps 0 and 1 use the warm-up
    init, _ = run_steps(config, devices[:1], num_steps=0)
    one, _ = run_steps(config, devices[:1], num_steps=1)
    two, _ = run_steps(config, devices[:1], num_steps=2)
    d0, d1 = 1 / 10, 2 / 11  # min(0.5, (1 + s) / (10 + s)) at s = 0, 1
    for e0, p1, e1, p2, e2 in zip(
        *(jax.tree.leaves(t) for t in (init.ema_params, one.params, one.ema_params, two.params,
                                        two.ema_params)), strict=True,
    ):  # fmt: skip
        np.testing.assert_allclose(e1, d0 * e0 + (1 - d0) * p1, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(e2, d1 * e1 + (1 - d1) * p2, rtol=1e-6, atol=1e-7)
    assert not np.allclose(jax.tree.leaves(two.ema_params)[0], jax.tree.leaves(two.params)[0])


def test_ema_decay_warm_up_formula():
    steps = jnp.array([0, 1, 8, 9, 100, 10_000])
    expected = np.minimum(0.9, (1 + np.array(steps)) / (10 + np.array(steps)))
    np.testing.assert_allclose(ema_decay(steps, 0.9), expected, rtol=1e-6)


def _reverse_step_numpy(x, eps, v, abar, abar_prev, sigma, log_beta, log_tilde, z, learned):
    """One reverse step of samplers.py's docstring, in float64, clipping x0 to [-1, 1]."""
    x, eps, v, z = (np.asarray(a, np.float64) for a in (x, eps, v, z))
    x0 = np.clip((x - np.sqrt(1 - abar) * eps) / np.sqrt(abar), -1, 1)
    eps = (x - np.sqrt(abar) * x0) / np.sqrt(1 - abar)  # recomputed from the clipped x0
    direction = np.sqrt(max(1 - abar_prev - sigma**2, 0.0))
    std = sigma
    if learned:
        frac = (v + 1) / 2
        std = np.exp(0.5 * (frac * log_beta + (1 - frac) * log_tilde))
    return np.sqrt(abar_prev) * x0 + direction * eps + std * z


@pytest.mark.parametrize(("eta", "learned"), [(0.0, False), (1.0, False), (1.0, True)])
def test_one_reverse_step_against_numpy_with_clipping_active(eta, learned, devices):
    shape, n = (2, 2, 1), 4
    diffusion = schedule.make_diffusion(config_for())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    out = rng.normal(size=(n, *shape[:2], 2 * shape[2] if learned else shape[2]))
    out[..., 0] *= 3.0  # large eps: most predicted x0 fall outside [-1, 1]
    out = out.astype(np.float32)
    mesh = sharding.make_mesh(devices=devices[:1])

    def model_fn(params, x_t, t, y):
        del params, t, y
        return jnp.asarray(out)

    num_steps = 3  # respaced timesteps 0, 500, 999: three reverse steps
    sample = samplers.make_sampler(model_fn, diffusion, num_steps, eta, shape, mesh,
                                   learned_variance=learned)  # fmt: skip
    coef = samplers.reverse_coefficients(np.asarray(diffusion.alphas_cumprod), num_steps, eta)
    keys = samplers._sample_keys(0, np.arange(n))
    noise = lambda i: np.stack(  # noqa: E731
        [jax.random.normal(jax.random.fold_in(k, i), shape) for k in keys]
    )
    eps = out[..., : shape[2]]
    v = out[..., shape[2] :] if learned else np.zeros_like(eps)
    x = noise(num_steps)  # the initial noise
    for i in reversed(range(num_steps)):  # at i = 0, sigma = 0 (and no learned noise)
        c = [float(a[i]) for a in coef[1:]]
        x = _reverse_step_numpy(x, eps, v, *c, noise(i), learned and i > 0)
    got = np.asarray(sample(None, 0, np.arange(n)))
    assert np.abs((np.asarray(noise(num_steps)) - np.sqrt(1 - coef.abar[-1]) * eps) /
                  np.sqrt(coef.abar[-1])).max() > 1  # fmt: skip
    np.testing.assert_allclose(got, x, rtol=1e-5, atol=1e-5)


class _LinearModel(nn.Module):
    """Output [eps, v] = [x (1 + y), x (2 + y)]: closed forms for guidance (y = label)."""

    @nn.compact
    def __call__(self, x, t, y, train=False):
        del t, train
        scale = (1.0 + y.astype(x.dtype))[:, None, None, None]
        return jnp.concatenate([x * scale, x * (scale + 1.0)], axis=-1)


def test_guidance_with_a_learned_variance_guides_eps_and_leaves_v_conditional():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 2, 2, 2)), jnp.float32)
    t, y, null, s = jnp.array([1, 2, 3]), jnp.array([0, 2, 5]), 9, 3.0
    out = guidance.guided_model_fn(_LinearModel(), s, 0, null)({}, x, t, y)
    cond = 1.0 + y[:, None, None, None]
    eps = x * ((1.0 + null) + s * (cond - (1.0 + null)))  # eps_u + s (eps_c - eps_u)
    np.testing.assert_allclose(out[..., :2], eps, rtol=1e-6)
    np.testing.assert_allclose(out[..., 2:], x * (cond + 1.0), rtol=1e-6)  # v: conditional


def test_sampled_labels_are_the_sample_number_mod_the_classes():
    indices = np.arange(37, 62)
    np.testing.assert_array_equal(samplers.sample_labels(indices, 10), indices % 10)
    np.testing.assert_array_equal(samplers.sample_labels(np.arange(4), 3), [0, 1, 2, 0])


class _ColumnSource:
    """Image i holds i + 1 in its left column: a flip moves it to the right."""

    num_examples = 10
    example_shapes = {"x0": (1, 4, 1)}
    with_labels = False

    def examples(self, indices, flips=None):
        out = np.zeros((len(indices), 1, 4, 1), np.float32)
        out[:, 0, 0, 0] = np.asarray(indices) + 1
        return {"x0": out}


def test_flips_follow_the_documented_mask_of_stream_positions(devices):
    mesh = sharding.make_mesh(devices=devices[:1])
    it = input_pipeline.GlobalBatchIterator(
        _ColumnSource(), 3, (1, 2, 2), mesh, random_flip=True
    )  # fmt: skip
    flips = []
    for _ in range(5):  # 20 stream positions: two epochs of 10
        it.next_indices()
        flips.append(it.last_flips)
    mask = np.concatenate([input_pipeline.flip_mask(3, e, 10) for e in (0, 1)])
    np.testing.assert_array_equal(np.concatenate(flips), mask)


def _pcgrad_numpy(grads, orders):
    """PCGrad (Yu et al.) in float64: g_i^pc loses its component along the original g_j on
    conflict, j in orders[i] (i skipped); the mean of the g_i^pc."""
    out = []
    for i, g in enumerate(grads):
        g = g.copy()
        for j in orders[i]:
            if j != i and g @ grads[j] < 0:
                g -= (g @ grads[j]) / (grads[j] @ grads[j]) * grads[j]
        out.append(g)
    return np.mean(out, axis=0)


def test_pcgrad_follows_its_random_orders_where_the_order_matters():
    grads = np.array([[1.0, 0.0, 0.0], [-0.6, 1.0, 0.0], [-0.5, -0.9, 0.3]])
    orders = [np.array(o) for o in ([0, 2, 1], [2, 1, 0], [1, 0, 2])]
    reversed_orders = [o[::-1] for o in orders]
    assert not np.allclose(_pcgrad_numpy(grads, orders), _pcgrad_numpy(grads, reversed_orders))
    weights, _ = pcgrad.projection_weights(jnp.asarray(grads @ grads.T), jnp.asarray(orders))
    np.testing.assert_allclose(np.asarray(weights) @ grads, _pcgrad_numpy(grads, orders), atol=1e-6)
    # The transform draws a new random order per task and step from its key: over keys, the
    # orders it uses are not all one fixed order.
    seen = {tuple(map(tuple, np.asarray(pcgrad.task_orders(jax.random.PRNGKey(s), 3))))
            for s in range(8)}  # fmt: skip
    assert len(seen) > 1
    for key in range(3):
        transform = pcgrad.pcgrad(3, seed=key)
        state = transform.init({"w": jnp.zeros(3)})
        update, _ = transform.update({"w": jnp.asarray(grads)}, state, {"w": jnp.zeros(3)},
                                     task_losses=jnp.ones(3))  # fmt: skip
        first = np.asarray(pcgrad.task_orders(jax.random.split(state.key)[1], 3))
        np.testing.assert_allclose(update["w"], _pcgrad_numpy(grads, first), atol=1e-6)


def test_every_mutation_of_the_mutation_check_applies_exactly_once(tmp_path):
    """tools/mutants.py's list stays applicable as the code changes (each `old` occurs once)."""
    from tools import mutants

    assert len(mutants.MUTATIONS) >= 30
    assert len({m.name for m in mutants.MUTATIONS}) == len(mutants.MUTATIONS)
    for mutation in mutants.MUTATIONS:
        target = tmp_path / mutation.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(os.path.join(mutants.ROOT, mutation.path)) as f:
            target.write_text(f.read())
        mutants.apply(mutation, str(tmp_path))
        assert mutation.old != mutation.new and mutation.new in target.read_text()
        assert all(os.path.isfile(os.path.join(mutants.ROOT, t)) for t in mutation.tests)


def test_cagrad_on_two_orthonormal_gradients_is_the_mean_times_its_closed_form():
    """g1, g2 orthonormal: by symmetry x = (1/2, 1/2), g_x = g0, so the update is
    (g0 + c g0) / (1 + c^2)."""
    from diffmtl.mtl.methods import cagrad

    grads = np.eye(2)
    for c in (0.0, 0.4, 0.9):
        w = np.asarray(cagrad.cagrad_weights(jnp.asarray(grads @ grads.T, jnp.float32), c=c))
        np.testing.assert_allclose(w @ grads, grads.mean(0) * (1 + c) / (1 + c**2), atol=1e-4)


def _project_to_dual_cone(g, grads):
    """argmin_v |v - g|^2 subject to <v, g_j> >= 0 for every j (scipy's SLSQP, float64)."""
    from scipy import optimize

    constraints = [{"type": "ineq", "fun": lambda v, gj=gj: v @ gj} for gj in grads]
    return optimize.minimize(lambda v: np.sum((v - g) ** 2), g, constraints=constraints,
                             method="SLSQP", options={"ftol": 1e-12}).x  # fmt: skip


def test_upgrad_is_the_mean_of_the_projections_onto_the_dual_cone():
    from diffmtl.mtl.methods import upgrad

    grads = np.random.default_rng(15).normal(size=(3, 4))
    grads[:, 0] += 1.0  # conflicting pairs, a dual cone with an interior
    expected = np.mean([_project_to_dual_cone(g, grads) for g in grads], axis=0)
    assert np.linalg.norm(expected) > 0.5
    w = np.asarray(upgrad.upgrad_weights(jnp.asarray(grads @ grads.T, jnp.float32)))
    np.testing.assert_allclose(w @ grads, expected, atol=1e-4)


def test_grad_norm_is_logged_before_the_clip_and_clip_binds_says_when_it_shortened_it(devices):
    """Vanilla with a clip far below its gradient norm: every step binds, and the logged norm
    is the unclipped one (AdamW's first step moves each parameter by about the learning rate
    whatever the scale, so the update norm does not reveal the clip; the logged norm must)."""
    config = config_for(method="equal")
    config.clustering.k, config.clustering.method = 1, "uniform"
    config.train.grad_clip_norm = 1e-6
    _, clipped = run_steps(config, devices[:1], num_steps=1)
    config.train.grad_clip_norm = 0.0
    _, free = run_steps(config, devices[:1], num_steps=1)
    assert float(clipped["clip_binds"]) == 1.0 and float(free["clip_binds"]) == 0.0
    assert float(clipped["grad_norm"]) == pytest.approx(float(free["grad_norm"]), rel=1e-6)
    assert float(free["grad_norm"]) > 1e-3


@pytest.mark.parametrize("k", [2, 3, 5, 6])
@pytest.mark.parametrize("tiny", [1e-2, 1e-3, 1e-4])
def test_imtl_g_projects_equally_even_with_a_tiny_gradient(k, tiny):
    """IMTL-G's defining property, <d, g_i / |g_i|> equal for every i, with one gradient `tiny`
    times the others (the pseudo-inverse of the raw float32 Gram lost it below about 1e-3)."""
    from diffmtl.mtl.methods import imtl_g

    grads = np.random.default_rng(k).normal(size=(k, 50))
    grads[-1] *= tiny
    w = np.asarray(imtl_g.imtl_g_weights(jnp.asarray(grads @ grads.T, jnp.float32)), np.float64)
    projections = grads @ (w @ grads) / np.linalg.norm(grads, axis=1)
    assert np.ptp(projections) <= 1e-5 * np.abs(projections).mean()
    assert w.sum() == pytest.approx(1.0, abs=1e-6)


def test_imtl_g_keeps_the_pseudo_inverse_answer_on_rank_deficient_grams():
    from diffmtl.mtl.methods import imtl_g

    base = np.random.default_rng(3).normal(size=(2, 20))
    grads = np.stack([base[0], base[1], base[0] + base[1], 2 * base[0]])  # rank 2
    gram = grads @ grads.T
    v = np.linalg.pinv(gram / np.trace(gram), hermitian=True) @ np.sqrt(
        np.diag(gram / np.trace(gram))
    )
    w = np.asarray(imtl_g.imtl_g_weights(jnp.asarray(gram, jnp.float32)))
    np.testing.assert_allclose(w, v / v.sum(), rtol=2e-3, atol=2e-4)


def test_posterior_samples_have_the_posterior_moments_and_are_independent_of_the_noise():
    """z = mean + std * eps: (z - mean) / std over 20,000 examples with their own keys has mean
    0 and variance 1 (4-sigma bounds), whatever the std (0.1 to 3), and is uncorrelated with
    the diffusion noise drawn from the same keys (steps.draw_noise_and_timesteps folds the key
    differently)."""
    from diffmtl.training import steps

    n = 20_000
    rng = np.random.default_rng(3)
    mean = rng.normal(size=(n, 1, 1, 1)).astype(np.float32)
    std = rng.uniform(0.1, 3.0, size=(n, 1, 1, 1)).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(5), n)
    u = ((np.asarray(steps.sample_posterior(mean, std, keys)) - mean) / std).ravel()
    assert abs(u.mean()) < 4 / np.sqrt(n)
    assert abs(u.var() - 1.0) < 4 * np.sqrt(2 / n)
    noise = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (1, 1, 1)))(keys)).ravel()
    assert abs(np.corrcoef(u, noise)[0, 1]) < 4 / np.sqrt(n)
