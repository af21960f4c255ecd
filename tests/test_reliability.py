"""Reliability: the non-finite guard, resume compatibility, topology change."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_tiny_config
from diffmtl.data import from_config as data_from_config
from diffmtl.data import pipeline as input_pipeline
from diffmtl.data.fashion_mnist import FashionMNIST
from diffmtl.errors import UserError
from diffmtl.training import checkpointing, experiment, loop, resume


def _experiment_and_state(config, devices):
    exp = experiment.build_experiment(config, devices)
    return exp, experiment.initial_state(config, exp)


def test_a_non_finite_step_changes_nothing_but_the_step_and_the_skip_count(devices):
    config = make_tiny_config()
    exp, state = _experiment_and_state(config, devices)
    data = input_pipeline.GlobalBatchIterator(exp.source, 0, exp.layout, exp.mesh)
    before = jax.device_get(state)
    batch = next(data)
    bad = {**batch, "x0": batch["x0"].at[0, 0, 0, 0, 0, 0].set(jnp.nan)}
    state, metrics = exp.train_step[False](state, bad)
    after = jax.device_get(state)
    assert int(after.step) == 1 and int(after.consecutive_skips) == 1
    assert float(metrics["skipped"]) == 1.0
    for old, new in zip(
        jax.tree.leaves((before.params, before.ema_params, before.opt_state)),
        jax.tree.leaves((after.params, after.ema_params, after.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(old, new)
    state, metrics = exp.train_step[False](state, next(data))
    good = jax.device_get(state)
    assert int(good.consecutive_skips) == 0 and float(metrics["skipped"]) == 0.0
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), good.params, before.params)
    assert any(jax.tree.leaves(changed))


@pytest.mark.slow
def test_a_run_of_non_finite_steps_stops_and_keeps_finite_checkpoints(tmp_path, monkeypatch):
    """Batches turn NaN after step 3: three skips in a row stop the run with one message;
    every checkpoint written holds finite values."""
    config = make_tiny_config()
    config.train.num_train_steps = 12
    config.train.max_consecutive_skips = 3

    class Poisoned(FashionMNIST):
        """Training examples turn NaN after the third batch."""

        calls = 0

        def examples(self, indices):
            out = super().examples(indices)
            Poisoned.calls += 1
            return {k: np.full_like(v, np.nan) for k, v in out.items()} if self.calls > 3 else out

    def source(cfg, split):
        return (Poisoned if split == "train" else FashionMNIST)(cfg.dir, split)

    monkeypatch.setitem(data_from_config.SOURCES, "fashion_mnist", source)
    with pytest.raises(UserError, match=r"stopped: 3 steps in a row had a non-finite loss"):
        loop.train_and_evaluate(config, str(tmp_path))
    manager = checkpointing.make_manager(str(tmp_path), 10)
    assert manager.latest_step() >= 4  # saves every 2 steps went on while steps were skipped
    _, like = _experiment_and_state(config, jax.devices())
    state, _ = checkpointing.restore(manager, like)
    assert int(state.consecutive_skips) >= 1
    leaves = jax.tree.leaves(jax.device_get((state.params, state.ema_params, state.opt_state)))
    assert all(np.all(np.isfinite(x)) for x in leaves)


def test_resume_refuses_locked_fields_and_allows_the_rest():
    saved = make_tiny_config()
    current = make_tiny_config()
    current.train.num_train_steps = 99
    current.log_every_steps = 7
    current.train.learning_rate = 3e-4
    current.mesh.fsdp = 2
    assert resume.changed_locked_fields(saved.to_dict(), current.to_dict()) == []
    current.clustering.k = 4
    current.model.channel_mult = (1, 2, 2)
    current.mtl.method = "uw"
    current.diffusion.schedule = "cosine"
    fields = resume.changed_locked_fields(saved.to_dict(), current.to_dict())
    assert fields == ["clustering.k", "diffusion.schedule", "model.channel_mult", "mtl.method"]
    with pytest.raises(UserError, match=r"clustering.k: 5 -> 4, diffusion.schedule"):
        resume.check_compatible(saved.to_dict(), current.to_dict(), "/w")


def _train_until(config, devices, workdir, until):
    """Resumes (or starts) in workdir on `devices`, trains to step `until`, saves; the state."""
    exp = experiment.build_experiment(config, devices)
    manager = checkpointing.make_manager(str(workdir), 5)
    state, position = resume.restore_or_initialise(config, exp, manager, str(workdir))
    data = input_pipeline.GlobalBatchIterator(
        exp.source, config.seed, exp.layout, exp.mesh, position or input_pipeline.DataPosition()
    )
    for _ in range(int(state.step), until):
        state, _ = exp.train_step[False](state, next(data))
    meta = {"data_position": vars(data.position), "config": config.to_dict()}
    checkpointing.save(manager, state, meta)
    manager.wait_until_finished()
    return jax.device_get(state)


@pytest.mark.slow
def test_a_four_device_checkpoint_resumes_on_two_and_on_one_device(devices, tmp_path):
    """Written on 4 devices at step 2, resumed on 2 and on 1 to step 4: the same batches, so the
    same parameters as 4 uninterrupted steps on 4 devices up to float32 reduction order
    (atol 1e-5 after four AdamW steps of lr 1e-3)."""
    config = make_tiny_config()
    reference = _train_until(config, devices, tmp_path / "reference", 4)
    _train_until(config, devices, tmp_path / "on2", 2)
    shutil.copytree(tmp_path / "on2", tmp_path / "on1")
    for name, count in (("on2", 2), ("on1", 1)):
        resumed = _train_until(config, devices[:count], tmp_path / name, 4)
        assert int(resumed.step) == 4
        for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(reference), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_checkpoint_of_another_state_layout_is_refused_in_one_line(tmp_path, devices):
    """E.g. one written before TrainState gained a field: a UserError, not an orbax traceback."""
    config = make_tiny_config()
    exp, state = _experiment_and_state(config, devices)
    manager = checkpointing.make_manager(str(tmp_path), 2)
    old = {"step": state.step, "params": state.params}  # an older, smaller state
    meta = {"data_position": {"epoch": 0, "index": 0}, "config": config.to_dict()}
    args = checkpointing.ocp.args.Composite(
        state=checkpointing.ocp.args.StandardSave(old),
        meta=checkpointing.ocp.args.JsonSave(meta),
    )
    manager.save(0, args=args)
    manager.wait_until_finished()
    with pytest.raises(
        UserError,
        match=r"checkpoint step 0 in .* cannot be restored: damaged, incomplete or written by "
        r"another version \(ValueError",
    ):
        resume.restore_or_initialise(config, exp, manager, str(tmp_path))
