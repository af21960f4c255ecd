"""The air-gapped accelerator command, rehearsed on CPU: a venv with only what the GPU host has
(tools/accelerator_bundle.HOST_HAS at requirements.txt's versions: jax, flax, optax, ... and no
TensorFlow, TFDS, clu or ml_collections), a copy of the checkout, the bundle built for this
Python, then `bash tools/accelerator_run.sh OUT` at its CPU profile: it installs from bundle/
alone (pip --no-index), and every stage leaves its figures in OUT. The stand-in venv itself is
installed from the package index (or pip's cache); the run makes no network access."""

import json
import os
import subprocess
import sys

import pytest

from main_runs import ROOT
from tools import accelerator_bundle
from tools.checkout import copy_checkout

# The host's packages we install in the stand-in (the rest of HOST_HAS are their dependencies
# or the CUDA plugin); pinned to requirements.txt.
STAND_IN = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "absl-py",
            "tensorboard", "numpy", "safetensors", "tqdm", "pillow", "matplotlib",
            "pytest")  # fmt: skip
ABSENT = ("tensorflow", "tensorflow_datasets", "clu", "ml_collections")


def _locked(names) -> list[str]:
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        pins = {
            accelerator_bundle.requirement_name(line): line.strip() for line in f if "==" in line
        }
    return [pins[accelerator_bundle.normalise(name)] for name in names]


@pytest.mark.slow
def test_accelerator_command_rehearsed_on_cpu(tmp_path):
    venv, repo, out = tmp_path / "host", tmp_path / "repo", tmp_path / "out"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "-q", *_locked(STAND_IN)]
    result = subprocess.run(install, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    absent = f"import importlib.util as u; print([m for m in {ABSENT} if u.find_spec(m)])"
    assert subprocess.run([python, "-c", absent], capture_output=True, text=True).stdout == "[]\n"

    copy_checkout(str(repo))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    bundle = accelerator_bundle.write_bundle(str(repo / "bundle"), version)
    assert bundle["total_bytes"] <= accelerator_bundle.LIMIT_BYTES
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "JAX_", "DIFFMTL_", "VIRTUAL_ENV"))
    }  # fmt: skip
    env.update(PYTHON=python, DIFFMTL_ACCEL_PROFILE="cpu", DIFFMTL_ACCEL_LIMIT="900",
               PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull)  # fmt: skip
    run = subprocess.run(
        ["bash", "tools/accelerator_run.sh", str(out)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    log = (out / "run.log").read_text()
    assert run.returncode == 0, log[-4000:]

    stages = json.loads((out / "stages.json").read_text())
    assert {name: s["rc"] for name, s in stages.items()} == dict.fromkeys(
        ("install", "versions", "tests", "dit", "pilot"), 0
    ), log[-4000:]
    versions = json.loads((out / "versions.json").read_text())["versions"]
    assert versions["ml-collections"] == "1.1.0" and versions["tensorflow"] is None
    assert (repo / "bundle" / "site" / "ml_collections").is_dir()
    dit = [
        json.loads(line)
        for line in (out / "dit.jsonl").read_text().splitlines()
        if line.startswith('{"variant')
    ]
    assert [row["variant"] for row in dit] == ["DiT-Ti/4"] and dit[0]["step_seconds"] > 0
    plan = json.loads((out / "pilot_plan.json").read_text())
    results = json.loads((out / "pilot_results.json").read_text())
    steps = str(plan["steps"])
    fids = {name: run["evals"][steps]["fid"] for name, run in results["runs"].items()}
    assert sorted(fids) == sorted(f"{row}/seed_0" for row in plan["rows"])
    assert all(fid > 0 for fid in fids.values())
    assert "FID_FMNIST" in (out / "pilot_report.md").read_text()
