"""Post-hoc EMA: EDM2's sigma_rel <-> gamma, the tracked profiles against their closed form,
the inner products against numerical integration, reconstruction of a tracked profile (exact)
and of an untracked one (against a third profile tracked directly), the training step's profiles
by hand, and snapshots written by the loop and read back by --mode=evaluate / ema_sweep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from conftest import make_tiny_config
from diffmtl import modes
from diffmtl.errors import UserError
from diffmtl.training import ema_snapshots, loop, post_hoc_ema
from train_steps import config_for, run_steps


def test_sigma_rel_and_gamma_are_edm2s():
    assert post_hoc_ema.sigma_rel_to_gamma(0.05) == pytest.approx(16.9722, abs=1e-3)
    assert post_hoc_ema.sigma_rel_to_gamma(0.10) == pytest.approx(6.9372, abs=1e-3)
    for sigma_rel in (0.01, 0.07, 0.2, 0.28):
        gamma = post_hoc_ema.sigma_rel_to_gamma(sigma_rel)
        assert gamma >= 0 and post_hoc_ema.gamma_to_sigma_rel(gamma) == pytest.approx(sigma_rel)
    with pytest.raises(UserError, match="must be in"):
        post_hoc_ema.sigma_rel_to_gamma(0.3)


def test_tracked_profiles_equal_their_closed_form_on_a_scalar_sequence():
    theta = np.random.default_rng(0).normal(size=60)
    gammas = (post_hoc_ema.sigma_rel_to_gamma(0.05), 0.0, 3.0)
    profiles = (jnp.float32(7.0),) * 3  # the first step overwrites any start
    for t, value in enumerate(theta, start=1):
        profiles = post_hoc_ema.update_profiles(
            profiles, jnp.float32(value), jnp.asarray(t), gammas
        )
        if t in (1, 17, 60):
            for profile, gamma in zip(profiles, gammas, strict=True):
                tau = np.arange(1, t + 1, dtype=np.float64)
                w = (tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)) / t ** (gamma + 1)
                assert w.sum() == pytest.approx(1.0)
                assert float(profile) == pytest.approx(w @ theta[:t], rel=2e-5, abs=2e-5)
    np.testing.assert_allclose(profiles[1], theta.mean(), rtol=1e-5)  # gamma 0: the mean


def test_profile_inner_products_match_numerical_integration():
    def density(t, g):
        return lambda tau: (g + 1) * tau**g / t ** (g + 1) if tau <= t else 0.0

    for (ta, ga), (tb, gb) in [
        ((10, 3.0), (25, 7.0)),
        ((40, 16.9), (40, 6.9)),
        ((5, 0.0), (9, 2.5)),
    ]:
        pa, pb = density(ta, ga), density(tb, gb)
        numeric = integrate.quad(
            lambda x, pa=pa, pb=pb: pa(x) * pb(x), 0, max(ta, tb), limit=200, points=[min(ta, tb)]
        )[0]
        assert post_hoc_ema._inner(ta, ga, tb, gb) == pytest.approx(numeric, rel=1e-6)


def _toy_run(steps=200, every=10):
    rng = np.random.default_rng(1)
    theta = np.cumsum(rng.normal(size=steps)) * 0.1 + np.sin(np.arange(steps) / 15)
    gammas = [post_hoc_ema.sigma_rel_to_gamma(s) for s in (0.05, 0.10, 0.07)]
    profiles, snapshots = (jnp.float32(0.0),) * 3, []
    for t in range(1, steps + 1):
        profiles = post_hoc_ema.update_profiles(
            profiles, jnp.float32(theta[t - 1]), jnp.asarray(t), gammas
        )
        if t % every == 0:
            snapshots.append((t, [float(profiles[0]), float(profiles[1])]))
    entries = [(t, gammas[i]) for t, _ in snapshots for i in range(2)]
    values = [v for _, pair in snapshots for v in pair]
    return profiles, gammas, entries, values


def test_reconstructing_a_tracked_profile_returns_it_and_an_untracked_one_matches_tracking():
    profiles, gammas, entries, values = _toy_run()
    tracked = post_hoc_ema.solve_weights(entries, (200, gammas[1]))
    assert float(np.dot(tracked, values)) == pytest.approx(float(profiles[1]), abs=1e-6)
    x = post_hoc_ema.solve_weights(entries, (200, gammas[2]))  # sigma_rel 0.07, not snapshotted
    reconstructed = post_hoc_ema.reconstruct(lambda i: {"p": np.float32(values[i])}, x)["p"]
    spread = abs(float(profiles[0]) - float(profiles[1]))
    assert abs(float(reconstructed) - float(profiles[2])) < 1e-3 * spread  # measured 4e-4


def test_the_training_step_tracks_the_profiles_by_hand(devices):
    config = config_for()
    config.train.ema_profiles = (0.05, 0.2)
    one, _ = run_steps(config, devices[:1], num_steps=1)
    two, _ = run_steps(config, devices[:1], num_steps=2)
    for i, sigma_rel in enumerate(config.train.ema_profiles):
        gamma = post_hoc_ema.sigma_rel_to_gamma(sigma_rel)
        w1, w2 = post_hoc_ema.discrete_weights(2, gamma)
        trees = (two.ema_profiles[i], one.params, two.params)
        for got, p1, p2 in zip(*(jax.tree.leaves(t) for t in trees), strict=True):
            np.testing.assert_allclose(got, w1 * p1 + w2 * p2, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_snapshots_are_written_and_post_hoc_evaluation_reads_them(tmp_path):
    config = make_tiny_config()
    config.train.num_train_steps, config.train.ema_snapshot_every_steps = 4, 2
    workdir = str(tmp_path / "run")
    state = jax.device_get(loop.train_and_evaluate(config, workdir))
    assert ema_snapshots.make_manager(workdir).all_steps() == [2, 4]
    tracked = ema_snapshots.params_at(workdir, state.params, 4, 0.10)  # a tracked profile
    for a, b in zip(jax.tree.leaves(tracked), jax.tree.leaves(state.ema_profiles[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    config.eval.ema_sigma_rel = 0.07
    assert "post-hoc EMA sigma_rel 0.07" in modes.MODES["evaluate"](config, workdir)
    config.eval.ema_sweep_sigma_rels = (0.05, 0.2)
    text = modes.MODES["ema_sweep"](config, workdir)
    assert "| sigma_rel 0.2 |" in text and "classic" in text
    for name in ("ema_sweep.json", "ema_sweep.md", "ema_sweep.png"):
        assert (tmp_path / "run" / name).is_file()
    with pytest.raises(UserError, match="no EMA snapshots up to step 1"):
        ema_snapshots.params_at(workdir, state.params, 1, 0.07)
