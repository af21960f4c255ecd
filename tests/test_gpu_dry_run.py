"""Dry runs for an H100 / H200 from a CPU host (--topology=h100:N): names and their one-line
errors, the missing-plugin line, and (where jax's CUDA plugin is installed: `make aot`, as CI
does) the tiny config compiled by XLA's GPU compiler for 8 H100s without a GPU."""

import importlib.util
import json
import subprocess
import sys

import pytest

from diffmtl.errors import UserError
from diffmtl.training import gpu_topology
from main_runs import ROOT, aot_env, aot_has, config_flags

PLUGIN = "jax_plugins.xla_cuda12"


def test_gpu_target_names_and_their_errors(monkeypatch):
    assert gpu_topology.parse("h100:8") == ("h100", 8)
    assert gpu_topology.parse("h200:16") == ("h200", 16)
    assert gpu_topology.is_gpu("h200:1") and not gpu_topology.is_gpu("v5e:2x4")
    for bad in ("h100", "h100:0", "h100:12", "h100:x", "a100:8"):
        with pytest.raises(UserError, match="is not a GPU target name: use h100:N or h200:N"):
            gpu_topology.parse(bad)
    monkeypatch.delenv(gpu_topology.MEM_FRACTION_VARIABLE, raising=False)
    assert gpu_topology.usable_gib("h100:8") == pytest.approx(0.75 * 80e9 / 2**30)
    monkeypatch.setenv(gpu_topology.MEM_FRACTION_VARIABLE, "0.9")
    assert gpu_topology.usable_gib("h200:8") == pytest.approx(0.9 * 141e9 / 2**30)


def test_without_the_plugin_one_line_names_the_extra(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"needs jax's CUDA plugin: .*diffmtl\[gpu-dryrun\]"):
        gpu_topology.devices("h100:8")


# Run where the plugin is: the per-device shards of the tiny config's training state and batch,
# counted from their shapes and shardings, beside the compiled step's resident bytes.
RESIDENT = """
import json, math, sys
import jax, numpy as np
sys.path.insert(0, "tests")
from conftest import make_tiny_config
from diffmtl.training import dry_run, experiment, gpu_topology
devices = gpu_topology.devices("h100:8")
config = make_tiny_config()
config.train.batch_size = 80
report = dry_run.dry_run(config, devices, sampling=False)
exp = experiment.build_experiment(config, devices, with_data=False)
shards = sum(
    math.prod(s.sharding.shard_shape(s.shape)) * np.dtype(s.dtype).itemsize
    for s in jax.tree.leaves(dry_run.abstract_inputs(config, exp))
)
kind = devices[0].device_kind
print(json.dumps([len(devices), kind, shards, report.weighted_step.resident_bytes]))
"""


@pytest.mark.slow
def test_the_gpu_compiler_holds_exactly_the_state_and_batch_shards_per_device():
    """Oracle: what stays resident between steps (arguments + outputs - donated aliases) is the
    per-device shards of the training state and the batch; the scalar metrics are the only
    other outputs (under 4 KiB)."""
    if not aot_has(PLUGIN):
        pytest.skip("jax's CUDA plugin is not installed (make aot, or diffmtl[gpu-dryrun])")
    run = subprocess.run(
        [sys.executable, "-c", RESIDENT], cwd=ROOT, env=aot_env(), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    count, kind, shards, resident = json.loads(run.stdout.splitlines()[-1])
    assert (count, kind) == (8, "NVIDIA H100 80GB HBM3")
    assert shards <= resident <= shards + 4096


@pytest.mark.slow
def test_the_tiny_config_compiles_for_eight_h100s_through_main():
    if not aot_has(PLUGIN):
        pytest.skip("jax's CUDA plugin is not installed (make aot, or diffmtl[gpu-dryrun])")
    command = [sys.executable, "main.py", *config_flags(), "--dry_run", "--topology=h100:8"]
    result = subprocess.run(command, cwd=ROOT, env=aot_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("backend: gpu x 8 devices (h100:8, NVIDIA H100 80GB HBM3: XLA's")
    assert any(line.startswith("sampling step, batch") for line in lines)
    assert any(line.startswith("fits in 55.9 GiB per GPU") for line in lines)
