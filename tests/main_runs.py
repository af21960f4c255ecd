"""main.py in a subprocess on the tests' tiny config (tests/tiny_config.py): what the dry-run,
preemption and multi-process tests launch. The subprocess inherits the tests' XLA flags and
persistent compilation cache (conftest), so every launch after the first loads its programs."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = os.path.join(ROOT, "tests", "tiny_config.py")


def config_flags(**overrides) -> list[str]:
    """--config=<tiny config> and one --config.<field>=<value> per override
    ({'train.num_train_steps': 8})."""
    return [f"--config={TINY_CONFIG}", *(f"--config.{k}={v}" for k, v in overrides.items())]


def launch(overrides: dict, workdir, *flags, stdout=subprocess.DEVNULL, **extra_env):
    """Starts `python main.py <tiny config + overrides> --workdir *flags`; stderr is piped."""
    cmd = [sys.executable, "main.py", *config_flags(**overrides), f"--workdir={workdir}", *flags]
    return subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **extra_env}, stdout=stdout, stderr=subprocess.PIPE
    )


# The TPU and GPU compilers for dry runs without the hardware (`make aot`: libtpu and jax's CUDA
# plugin), installed beside the venv's site-packages so that no other test's jax loads them.
AOT_SITE = os.path.join(ROOT, ".venv", "aot")


def aot_env() -> dict:
    """The environment of a subprocess that compiles for a --topology: AOT_SITE on its path and
    JAX_PLATFORMS=cpu (without it jax tries, and fails, to open a TPU or GPU first)."""
    path = os.pathsep.join(p for p in (AOT_SITE, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path}


def aot_has(module: str) -> bool:
    """Whether a subprocess with aot_env() finds `module` (libtpu, jax_plugins.xla_cuda12)."""
    code = f"import importlib.util as u, sys; sys.exit(0 if u.find_spec({module!r}) else 1)"
    found = subprocess.run([sys.executable, "-c", code], env=aot_env(), capture_output=True)
    return found.returncode == 0
