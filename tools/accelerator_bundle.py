"""Writes bundle/: what an air-gapped accelerator host lacks to run diffmtl (at most 64 MiB).

  python -m tools.accelerator_bundle                       # for the GPU host: Python 3.12
  python -m tools.accelerator_bundle --python_version=3.11 # for a stand-in of this machine's

then, on the host, from the repository root: `bash tools/accelerator_run.sh OUT_DIR`.

The host (HOST_HAS) has Python 3.12, jax with its CUDA plugin, flax, optax, orbax-checkpoint,
chex, absl-py, tensorboard, numpy, safetensors, tqdm, pillow, matplotlib and pytest (with their
own dependencies: scipy, etils, PyYAML, protobuf), but no TensorFlow, TFDS, clu or
ml_collections, and no network. The bundle holds:
  wheels/           the run-time dependencies of pyproject.toml that the host lacks, at
                    requirements.txt's versions, with their own dependencies: wheels only, for
                    the host's Python (pip download --only-binary)
  requirements.txt  what accelerator_run.sh installs from wheels/ (pip --no-index --target)
  fashion-mnist/    the four Fashion-MNIST IDX files (DIFFMTL_FASHION_MNIST_DIR there)
  manifest.json     every file with its size and sha256, the host's Python, the total
diffmtl itself is not installed there: the commands run from the repository root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

from absl import app, flags

from diffmtl.data.fashion_mnist import DEFAULT_DIR, FASHION_MNIST_FILES
from diffmtl.errors import UserError, exit_on_user_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_BYTES = 64 * 2**20  # What travels with the working tree to the accelerator host.
# Distributions the accelerator host has (normalised names), its packages' own dependencies
# included: what the bundle leaves out.
HOST_HAS = frozenset({
    "jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "flax", "optax",
    "orbax-checkpoint", "chex", "absl-py", "tensorboard", "numpy", "safetensors", "tqdm",
    "pillow", "matplotlib", "pytest", "scipy", "etils", "pyyaml", "protobuf",
})  # fmt: skip


def normalise(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """'etils[epath]>=1.15' -> 'etils'."""
    return normalise(re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0])


def missing_requirements(root: str = ROOT, host_has=HOST_HAS) -> list[str]:
    """pyproject.toml's run-time dependencies the host lacks, pinned to requirements.txt's
    version where it locks one (the versions our CPU runs use)."""
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    locked = {}
    with open(os.path.join(root, "requirements.txt")) as f:
        for line in f:
            if "==" in line and not line.startswith("#"):
                name, version = line.split("==")
                locked[normalise(name)] = version.strip()
    missing = []
    for requirement in dependencies:
        name = requirement_name(requirement)
        if name not in host_has:
            missing.append(f"{name}=={locked[name]}" if name in locked else requirement)
    return missing


def download_wheels(requirements: list[str], destination: str, python_version: str) -> None:
    """pip download of `requirements` and their dependencies as wheels for CPython
    `python_version` on Linux x86-64 (pure-Python wheels match any platform)."""
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--dest", destination,
        "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
        "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
        *requirements,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"pip download failed: {result.stderr.strip().splitlines()[-1]}")


def manifest(out: str) -> dict:
    """Every file under `out` with its size and sha256, and the total size."""
    files = {}
    for folder, _, names in os.walk(out):
        for name in sorted(names):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            files[os.path.relpath(path, out)] = {"bytes": os.path.getsize(path), "sha256": digest}
    return {"files": files, "total_bytes": sum(f["bytes"] for f in files.values())}


def write_bundle(out: str, python_version: str, data_dir: str = DEFAULT_DIR) -> dict:
    """Writes the bundle (module doc) into `out`, replacing it; UserError if over 64 MiB."""
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "wheels"))
    requirements = missing_requirements()
    download_wheels(requirements, os.path.join(out, "wheels"), python_version)
    with open(os.path.join(out, "requirements.txt"), "w") as f:
        f.write("".join(f"{r}\n" for r in requirements))
    data = os.path.join(out, "fashion-mnist")
    os.makedirs(data)
    for name in sum(FASHION_MNIST_FILES.values(), ()):
        source = os.path.join(data_dir, name)
        if not os.path.isfile(source):
            raise UserError(f"missing {source}: apt-get install dataset-fashion-mnist")
        shutil.copy(source, data)
    record = {"python_version": python_version, "requirements": requirements, **manifest(out)}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(record, f, indent=1)
    if record["total_bytes"] > LIMIT_BYTES:
        raise UserError(f"bundle is {record['total_bytes'] / 2**20:.1f} MiB, over 64 MiB")
    return record


def main(argv):
    del argv
    record = exit_on_user_error(write_bundle, FLAGS.out, FLAGS.python_version)
    wheels = sorted(name for name in record["files"] if name.startswith("wheels/"))
    print(f"{FLAGS.out}: {record['total_bytes'] / 2**20:.1f} MiB; {', '.join(wheels)}")


if __name__ == "__main__":
    FLAGS = flags.FLAGS
    flags.DEFINE_string("out", os.path.join(ROOT, "bundle"), "The bundle's folder (replaced).")
    flags.DEFINE_string("python_version", "3.12", "The host's Python (its wheels' tag).")
    app.run(main)
