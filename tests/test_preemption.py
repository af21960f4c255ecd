"""Preemption: SIGKILL at random steps and during a checkpoint write; the restarted run ends
bitwise equal (CPU) to an uninterrupted one."""

import os
import random
import signal
import time

import jax
import numpy as np
import pytest

from conftest import make_tiny_config
from diffmtl.training import checkpointing, experiment
from main_runs import launch

NUM_STEPS = 8
OVERRIDES = {
    "train.num_train_steps": NUM_STEPS,
    "checkpoint_every_steps": 1,
    "log_every_steps": 1,
    "task_gradient_cosine_every_steps": 0,
}


def _complete_steps(workdir):
    directory = os.path.join(workdir, "checkpoints")
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted(int(n) for n in names if n.isdigit())


def _kill_after_step(workdir, step):
    """Starts the run and SIGKILLs it once the checkpoint of `step` is complete."""
    process = launch(OVERRIDES, workdir)
    while process.poll() is None and not any(s >= step for s in _complete_steps(workdir)):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _final_state(workdir):
    config = make_tiny_config()
    exp = experiment.build_experiment(config)
    like = experiment.initial_state(config, exp)
    state, _ = checkpointing.restore(checkpointing.make_manager(workdir, 3), like)
    return jax.device_get(state)


@pytest.mark.slow
def test_killed_three_times_and_during_a_save_the_run_ends_bitwise_equal(tmp_path):
    reference = launch(OVERRIDES, tmp_path / "reference")
    assert reference.wait() == 0, reference.stderr.read().decode()[-2000:]

    workdir = str(tmp_path / "killed")
    for step in sorted(random.Random(0).sample(range(1, NUM_STEPS - 1), 2)):
        _kill_after_step(workdir, step)
    # The third kill lands while the checkpoint of a later step is being written.
    during = max(_complete_steps(workdir)) + 2
    process = launch(OVERRIDES, workdir, **{checkpointing.KILL_DURING_SAVE_ENV: str(during)})
    assert process.wait() == -signal.SIGKILL
    assert max(_complete_steps(workdir)) == during - 1  # the interrupted save is not complete
    finished = launch(OVERRIDES, workdir)
    assert finished.wait() == 0, finished.stderr.read().decode()[-2000:]
    assert _complete_steps(workdir)[-1] == NUM_STEPS

    a, b = _final_state(workdir), _final_state(str(tmp_path / "reference"))
    assert int(a.step) == int(b.step) == NUM_STEPS
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
