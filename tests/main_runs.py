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
