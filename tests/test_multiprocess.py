"""Two processes on localhost (jax.distributed, CPU collectives, 2 devices each) train like one
process with 4 devices: the path a TPU pod takes."""

import socket
import subprocess

import jax
import numpy as np
import pytest

from conftest import make_tiny_config
from diffmtl.training import checkpointing, experiment, loop
from main_runs import launch

OVERRIDES = {
    "train.num_train_steps": 3,
    "checkpoint_every_steps": 3,
    "task_gradient_cosine_every_steps": 0,
}


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_two_devices_equal_one_process_with_four(tmp_path):
    workdir = tmp_path / "two_processes"
    port = _free_port()
    flags = ["--multihost", f"--coordinator_address=localhost:{port}", "--num_processes=2"]
    processes = [
        launch(
            OVERRIDES,
            workdir,
            *flags,
            f"--process_id={i}",
            stdout=subprocess.PIPE,
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    assert b"FID_FMNIST" in outputs[0][0]

    config = make_tiny_config()
    for name, value in OVERRIDES.items():
        config.update_from_flattened_dict({name: value})
    one = jax.device_get(loop.train_and_evaluate(config, str(tmp_path / "one_process")))
    exp = experiment.build_experiment(config)
    like = experiment.initial_state(config, exp)
    two, _ = checkpointing.restore(checkpointing.make_manager(str(workdir), 3), like)
    two = jax.device_get(two)
    assert int(two.step) == int(one.step) == 3
    for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(one), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)  # reduction order across processes
