"""Dry runs for a TPU slice from a CPU host (--topology): names and their one-line errors, the
missing-libtpu line, the roofline arithmetic, and (where libtpu is installed: `make aot`, as CI
does) the tiny config compiled by the TPU compiler for a v5e:2x2 slice through main.py."""

import importlib.util
import subprocess
import sys

import pytest

from diffmtl.errors import UserError
from diffmtl.training import tpu_topology
from main_runs import ROOT, aot_env, aot_has, config_flags


def test_topology_names_and_their_errors():
    assert tpu_topology.parse("v5e:2x4") == ("v5e", (2, 4))
    assert tpu_topology.parse("v5p:2x2x4") == ("v5p", (2, 2, 4))
    assert tpu_topology.usable_gib("v4:2x2x4") == 32.0
    for bad in ("v5litepod-8", "v5e:2x2x2", "v5p:2x4", "v9:2x2", "v5e:0x2", "v5e"):
        with pytest.raises(UserError, match="is not a TPU topology name: use v4:AxBxC"):
            tpu_topology.parse(bad)


def test_the_roofline_bound_is_the_slower_of_compute_and_memory_traffic():
    # v5e: 197 bf16 TFLOP/s and 819 GB/s per chip, so one second of each at the peak.
    assert tpu_topology.roofline_seconds("v5e:2x4", 197e12, 0.0) == pytest.approx(1.0)
    assert tpu_topology.roofline_seconds("v5e:2x4", 0.0, 819e9) == pytest.approx(1.0)
    assert tpu_topology.roofline_seconds("v5p:2x2x2", 459e12, 2 * 2765e9) == pytest.approx(2.0)
    assert set(tpu_topology.PEAK_TFLOPS) == set(tpu_topology.HBM_GBPS) == set(tpu_topology.HBM_GIB)


def test_without_libtpu_one_line_names_the_extra(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"needs libtpu .*diffmtl\[tpu-dryrun\]"):
        tpu_topology.devices("v5e:2x2")


@pytest.mark.slow
def test_the_tiny_config_compiles_for_a_v5e_slice():
    if not aot_has("libtpu"):
        pytest.skip("libtpu is not installed (make aot, or pip install 'diffmtl[tpu-dryrun]')")
    command = [sys.executable, "main.py", *config_flags(), "--dry_run", "--topology=v5e:2x2"]
    result = subprocess.run(command, cwd=ROOT, env=aot_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == "backend: tpu x 4 devices (v5e:2x2, TPU v5 lite: the TPU compiler's own figures)"
    )
    step = next(line for line in lines if line.startswith("weighted-loss step"))
    assert "compiler's peak" in step and "code" in step
    assert any(line.startswith("fits in 16 GiB of HBM per chip") for line in lines)
    assert any(line.startswith("sampling step, batch") for line in lines)
    assert sum("per step on TPU v5 lite (roofline bound)" in line for line in lines) == 2
