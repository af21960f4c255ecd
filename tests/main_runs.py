"""main.py in a subprocess on a shrunk default config: what the preemption and multi-process
tests launch. The config file imports conftest, so the subprocess uses the tests' persistent
compilation cache: every launch after the first loads the tiny config's programs."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from conftest import make_tiny_config


def get_config():
    config = make_tiny_config()  # the default config, shrunk
{overrides}
    return config
"""


def write_tiny_config(path, **overrides):
    """Writes a config file: make_tiny_config() with `overrides` ('train.num_train_steps': 8)."""
    lines = "\n".join(f"    config.{name} = {value!r}" for name, value in overrides.items())
    path.write_text(_CONFIG.format(tests=os.path.join(ROOT, "tests"), overrides=lines))
    return path


def launch(config_path, workdir, *flags, stdout=subprocess.DEVNULL, **extra_env):
    """Starts `python main.py --config --workdir *flags`; stderr is piped."""
    cmd = [sys.executable, "main.py", f"--config={config_path}", f"--workdir={workdir}", *flags]
    return subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **extra_env}, stdout=stdout, stderr=subprocess.PIPE
    )
