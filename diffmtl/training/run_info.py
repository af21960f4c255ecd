"""What a run records about itself: the resolved config, library versions, git SHA, devices."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys

import jax
from etils import epath

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "chex",
    "ml-collections",
    "numpy",
    "tensorboard",
    "clu",  # Optional (the tfds extra): null where it is not installed.
    "tensorflow",
    "tensorflow-cpu",
)


def installed_version(package: str) -> str | None:
    """The installed version of `package`, None where it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_sha() -> str:
    """The commit of the diffmtl checkout ('unknown' outside a git work tree)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def host_cpu() -> str:
    """The host CPU's model name and its SIMD level: XLA:CPU's float results can differ between
    hosts (bitwise reproductions compare runs on one kind of CPU)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or "unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "unknown")  # fmt: skip
    flags = set(next((line for line in info.splitlines() if line.startswith("flags")), "").split())
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{model} ({os.cpu_count()} cores; {', '.join(simd) or 'no AVX2'})"


def run_info() -> dict:
    """Versions, git SHA, devices and host CPU as a JSON-serialisable dict."""
    return {
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "versions": {p: installed_version(p) for p in PACKAGES},
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "host_cpu": host_cpu(),
    }


def write_run_info(workdir: str, config, boundaries) -> None:
    """Writes config.json, clusters.json ([k, 2] intervals) and run_info.json (process 0 only)."""
    if jax.process_index() != 0:
        return
    root = epath.Path(workdir)  # A local path or a bucket (gs://...).
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(config.to_json_best_effort(indent=2))
    clusters = {"method": config.clustering.method, "intervals": boundaries.tolist()}
    (root / "clusters.json").write_text(json.dumps(clusters))
    (root / "run_info.json").write_text(json.dumps(run_info(), indent=2))
