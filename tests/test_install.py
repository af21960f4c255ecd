"""pip install from pyproject.toml alone (no requirements.txt) in a fresh venv: the package and
its weights install, `import diffmtl.mtl` works, TensorFlow is not pulled in, and the tiny
config trains 2 steps with the installed package (main.py and the configs copied beside it, so
nothing is imported from the checkout). Uses the package index (or pip's cache)."""

import os
import shutil
import subprocess
import sys

import pytest

from main_runs import ROOT


def _copy(names, destination):
    for name in names:
        source = os.path.join(ROOT, name)
        target = os.path.join(destination, os.path.basename(name))
        if os.path.isdir(source):
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)


@pytest.mark.slow
def test_pip_install_from_pyproject_alone_trains_the_tiny_config(tmp_path):
    source, run, venv = tmp_path / "source", tmp_path / "run", tmp_path / "venv"
    source.mkdir(), run.mkdir()
    _copy(["pyproject.toml", "README.md", "diffmtl"], source)
    _copy(["main.py", "configs", "tests/tiny_config.py"], run)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", str(source)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-3000:]

    probe = (
        "import importlib.util, diffmtl.mtl\n"
        "print(len(diffmtl.mtl.METHODS), importlib.util.find_spec('tensorflow') is None, "
        f"diffmtl.__file__.startswith({str(venv)!r}))"
    )
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=run)
    assert out.stdout.split() == ["16", "True", "True"], out.stderr[-3000:]

    command = [python, "main.py", "--config=tiny_config.py", "--config.train.num_train_steps=2"]
    result = subprocess.run(
        [*command, f"--workdir={tmp_path / 'work'}"], capture_output=True, text=True, cwd=run
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FID_FMNIST" in result.stdout
    assert os.listdir(tmp_path / "work" / "checkpoints") == ["2"]
