"""Negative transfer gap: specialists train only inside their interval, the composite sampler
switches parameters at the interval's steps, and `--mode=ntg` end to end (resumable)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_tiny_config
from diffmtl import config_validation, modes, tasks
from diffmtl.analysis import negative_transfer
from diffmtl.clustering import from_config, intervals
from diffmtl.diffusion import guidance
from diffmtl.diffusion import samplers as sampling
from diffmtl.errors import UserError
from diffmtl.training import experiment


def test_a_timestep_range_splits_only_that_interval_into_k_clusters():
    config = make_tiny_config()
    config.clustering.timestep_range = (200, 399)
    boundaries = from_config.cluster_boundaries(config)
    np.testing.assert_array_equal(boundaries, intervals.uniform_boundaries(200, 5) + 200)
    t = tasks.sample_timesteps(jax.random.PRNGKey(0), jnp.asarray(boundaries), 1000)
    assert int(t.min()) == 200 and int(t.max()) == 399


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("timestep_range", (300, 200), "first <= last"),
        ("timestep_range", (0, 1000), "< diffusion.num_timesteps=1000"),
        ("timestep_range", (0, 2), "at least clustering.k=5 timesteps"),
        ("method", "log_snr", "needs clustering.method='uniform'"),
    ],
)
def test_bad_timestep_ranges_are_refused_in_one_line(field, value, message):
    config = make_tiny_config()
    config.clustering.timestep_range = (100, 199)
    config.clustering[field] = value
    with pytest.raises(UserError, match=message):
        config_validation.validate(config, 4)


def test_specialists_share_everything_with_the_all_task_run_but_their_interval(tmp_path):
    config = make_tiny_config()
    config.clustering.method = "timestep"
    runs = negative_transfer.interval_configs(config, str(tmp_path))
    assert list(runs) == ["all_tasks"] + [f"specialist_{i}" for i in range(5)]
    assert runs["all_tasks"][0] is config
    for i, (first, last) in enumerate(intervals.uniform_boundaries(1000, 5)):
        specialist = runs[f"specialist_{i}"][0]
        assert tuple(specialist.clustering.timestep_range) == (first, last)
        assert specialist.clustering.method == "uniform"
        for section in ("seed", "model", "train", "diffusion", "mtl", "data"):
            assert specialist[section] == config[section]


def test_the_composite_sampler_uses_the_specialist_exactly_on_its_interval(devices):
    config = make_tiny_config()
    exp = experiment.build_experiment(config, devices)
    shared = experiment.initial_state(config, exp).params
    specialist = jax.tree.map(lambda p: p + 0.1, shared)
    shared = jax.tree.map(lambda p: p - 0.1, shared)

    def make(model_fn):
        return sampling.make_sampler(model_fn, exp.diffusion, 4, 0.0, exp.example_shape, exp.mesh)

    plain, composite = (
        make(guidance.guided_model_fn(exp.model)),
        make(negative_transfer.composite_model_fn(guidance.guided_model_fn(exp.model))),
    )
    indices = np.arange(4)

    def mixed(first, last):
        interval = jnp.array([first, last], jnp.int32)
        return np.asarray(composite((shared, specialist, interval), 0, indices))

    # Two programs: equal up to float32 fusion differences, which the 4 steps of a perturbed
    # model amplify to ~1e-4 (measured).
    only_specialist, only_shared = plain(specialist, 0, indices), plain(shared, 0, indices)
    np.testing.assert_allclose(mixed(0, 999), only_specialist, atol=1e-3)
    np.testing.assert_allclose(mixed(2000, 3000), only_shared, atol=1e-3)
    part = mixed(0, 500)  # the 4 respaced steps are 0, 333, 666, 999: two of each
    for other in (only_shared, only_specialist):
        assert np.abs(part - np.asarray(other)).max() > 0.05


@pytest.mark.slow
def test_ntg_mode_trains_evaluates_and_resumes(tmp_path):
    """Class-conditional with guidance, so labels reach the specialists and their samplers."""
    config = make_tiny_config()
    config.data.num_classes, config.model.class_dropout = 10, 0.1
    config.sampling.guidance_scale = 2.0
    config.train.num_train_steps = 1
    config.checkpoint_every_steps = 1
    config.task_gradient_cosine_every_steps = 0
    config.analysis.ntg_num_intervals = 2
    config.analysis.ntg_num_samples = 8
    config.analysis.ntg_sampling_steps = 3
    message = modes.negative_transfer_gap(config, str(tmp_path))
    record = json.loads((tmp_path / "ntg.json").read_text())
    assert record["intervals"] == [[0, 499], [500, 999]]
    fids = {name: quality["fid"] for name, quality in record["samplers"].items()}
    assert set(fids) == {"all_tasks", "specialist_0", "specialist_1"}
    expected = [fids["specialist_0"] - fids["all_tasks"], fids["specialist_1"] - fids["all_tasks"]]
    np.testing.assert_allclose(record["negative_transfer_gap"], expected)
    assert "NTG per interval: [0, 499]" in message
    assert (tmp_path / "ntg.png").stat().st_size > 0

    finished = {n: os.path.getmtime(tmp_path / n / "metrics.json") for n in fids}
    again = modes.negative_transfer_gap(config, str(tmp_path))  # nothing left to do
    assert again == message
    assert finished == {n: os.path.getmtime(tmp_path / n / "metrics.json") for n in fids}
