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


def test_the_docs_table_tool_reads_a_dry_run_log(tmp_path):
    """tools/dry_run_table.py turns a report under /usr/bin/time -v into docs/scaling.md rows."""
    from tools import dry_run_table

    log = tmp_path / "x.log"
    log.write_text(
        "backend: tpu x 8 devices (v5p:2x2x2, TPU v5: the TPU compiler's own figures)\n"
        "weighted-loss step: 2.705 GiB per device (1.966 GiB temporaries, compiler's peak 2.634 "
        "GiB, code 127.8 MiB, 3 rematerialised instructions), 1103.58 GFLOPs, 34.62 GB accessed"
        " per device\n"
        "  >= 12.5 ms per step on TPU v5 (roofline bound); the compiler's estimate 14.8 ms\n"
        "fits in 95 GiB of HBM per chip: needs 2.63 GiB (training 2.63, evaluation 0.89)\n"
        '\tCommand being timed: "timeout 1500 python main.py --config=c.py --dry_run '
        '--topology=v5p:2x2x2"\n'
        "\tElapsed (wall clock) time (h:mm:ss or m:ss): 3:28.97\n"
        "\tMaximum resident set size (kbytes): 2831155\n"
    )
    rows = dry_run_table.rows(str(log))
    assert rows[0] == (
        "| `--config=c.py --dry_run --topology=v5p:2x2x2` | weighted-loss step | 2.705 (1.966; "
        "2.634) | 127.8 MiB, 3 remat | 1103.58 | 12.5 / 14.8 | 3:28.97, 2.7 GB |"
    )
    assert rows[1].startswith("| | fits in 95 GiB of HBM per chip: needs 2.63 GiB")
