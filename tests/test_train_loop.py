"""train_and_evaluate end to end: artifacts in the workdir, and stop + restart == one run."""

import json
import os

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import make_tiny_config
from diffmtl import modes
from diffmtl.clustering import from_config, interval_clustering
from diffmtl.diffusion import schedule as diffusion
from diffmtl.errors import UserError
from diffmtl.training import events, experiment, loop, steps


def run(workdir, num_train_steps, clustering_method="uniform", on_log=None):
    config = make_tiny_config()
    config.train.num_train_steps = num_train_steps
    config.clustering.method = clustering_method
    return jax.device_get(loop.train_and_evaluate(config, str(workdir), on_log))


@pytest.fixture
def steps_trace_once(monkeypatch):
    """A run's train step fails if it is traced (so compiled) a second time.

    chex counts traces per definition site, shared by the steps of every experiment built the
    same way: the counter restarts with each experiment's steps (these runs use only the
    weighted-loss step, so one trace per run).
    """
    make = steps.make_train_step

    def make_checked(*args, **kwargs):
        chex.clear_trace_counter()
        return make(*args, max_traces=1, **kwargs)

    monkeypatch.setattr(steps, "make_train_step", make_checked)


@pytest.mark.slow
def test_restart_resumes_at_the_right_step_with_the_next_batch(tmp_path, steps_trace_once):
    logged = []
    uninterrupted = run(tmp_path / "a", 4, on_log=lambda step, s: logged.append((step, s)))
    assert [step for step, _ in logged] == [2, 4]
    for _, scalars in logged:
        losses = [scalars[f"train/task_losses/cluster_{i}"] for i in range(5)]
        assert scalars["train/loss"] == pytest.approx(np.mean(losses), rel=1e-5)
        assert scalars["train/loss_weights/cluster_0"] == pytest.approx(0.2)
    stopped = run(tmp_path / "b", 2)
    assert int(stopped.step) == 2
    resumed = run(tmp_path / "b", 4)
    assert int(resumed.step) == 4
    for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)  # Same program on CPU: bitwise equal.

    workdir = tmp_path / "b"
    for name in ("samples.png", "config.json", "run_info.json", "validation_loss.png"):
        assert (workdir / name).is_file()
    with open(workdir / "metrics.json") as f:
        record = json.load(f)
    assert record["step"] == 4 and record["feature_network"] == "fmnist_classifier"
    k = make_tiny_config().clustering.k
    expected = {
        "eval/fid",
        "eval/precision",
        "eval/recall",
        "val/loss",
        f"val/loss/cluster_{k - 1}",
    }
    assert expected <= set(record["metrics"])
    assert record["headline"].startswith("FID_FMNIST")
    tags = events.read_tags(str(workdir))
    assert {"train/loss", "train/task_losses/cluster_4", "task_gradient_cosine/0_1"} <= tags
    assert {"eval/fid", "val/loss/cluster_0"} <= tags
    manager = ocp.CheckpointManager(str(workdir / "checkpoints"), item_names=("state", "meta"))
    assert manager.all_steps() == [2, 4]
    meta = manager.restore(4, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    batch_size = make_tiny_config().train.batch_size
    assert meta["data_position"] == {"epoch": 0, "index": 4 * batch_size}
    assert meta["boundaries"] == resumed.boundaries.tolist()

    with pytest.raises(UserError, match="clustering.method: 'uniform' -> 'log_snr'"):
        run(workdir, 6, clustering_method="log_snr")
    assert manager.all_steps() == [2, 4]  # The refused resume wrote nothing.

    config = make_tiny_config()
    modes.sample(config, str(workdir))
    n = config.eval.num_samples
    with np.load(workdir / "samples" / f"samples_{n}x28x28x1.npz") as data:
        assert data["arr_0"].shape == (n, 28, 28, 1) and data["arr_0"].dtype == np.uint8
    os.remove(workdir / "metrics.json")
    assert "step 4: FID_FMNIST" in modes.evaluate_checkpoint(config, str(workdir))
    with open(workdir / "metrics.json") as f:
        assert json.load(f)["metrics"] == pytest.approx(record["metrics"], rel=1e-4)
    assert all(np.isfinite(list(record["metrics"].values())))


def test_sample_and_evaluate_modes_need_a_checkpoint(tmp_path):
    for mode in (modes.sample, modes.evaluate_checkpoint):
        with pytest.raises(UserError, match="no checkpoint in"):
            mode(make_tiny_config(), str(tmp_path))


def test_dp_clusters_reach_the_train_state(tmp_path):
    config = make_tiny_config()
    config.clustering.method = "log_snr"
    exp = experiment.build_experiment(config)
    state = experiment.initial_state(config, exp)
    abar = diffusion.schedule_alphas_cumprod(config)
    expected = interval_clustering(from_config.interval_cost("log_snr", abar), 5)
    np.testing.assert_array_equal(np.asarray(state.boundaries), expected)


@pytest.mark.slow
def test_class_conditional_restart_is_bitwise_and_samples_with_guidance(tmp_path, steps_trace_once):
    """Labels (with label dropout) through training, resume and guided sampling."""

    def conditional(workdir, steps):
        config = make_tiny_config()
        config.data.num_classes, config.model.class_dropout = 10, 0.5
        config.sampling.guidance_scale = 2.0
        config.train.num_train_steps = steps
        return jax.device_get(loop.train_and_evaluate(config, str(workdir)))

    uninterrupted = conditional(tmp_path / "a", 4)
    conditional(tmp_path / "b", 2)
    resumed = conditional(tmp_path / "b", 4)
    for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.params["class_embed"]["embedding"].shape == (11, 8)  # 10 classes + null
    with open(tmp_path / "b" / "metrics.json") as f:
        assert np.isfinite(json.load(f)["metrics"]["eval/fid"])
