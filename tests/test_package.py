"""Library hygiene: every module of the package imports in one process (no command-line flags
defined on import, no import cycles, the caller's matplotlib backend left alone: a notebook's
inline plots), and user errors are ValueErrors a caller can catch."""

import os
import subprocess
import sys

import numpy as np
import pytest

from diffmtl.clustering import interval_clustering
from diffmtl.errors import UserError
from main_runs import ROOT

IMPORT_ALL = """
import importlib, importlib.util, pkgutil
from absl import flags
import benchmarks, diffmtl
names = [m.name for m in pkgutil.walk_packages(diffmtl.__path__, "diffmtl.")]
names += [m.name for m in pkgutil.walk_packages(benchmarks.__path__, "benchmarks.")]
if importlib.util.find_spec("tensorflow_datasets") is None:  # the tfds extra's one command
    names.remove("diffmtl.data.prepare_tfds")
for name in names:
    importlib.import_module(name)
ours = sorted(
    m for m in flags.FLAGS.flags_by_module_dict() if m.split(".")[0] in ("diffmtl", "benchmarks")
)
import matplotlib
print(len(names), matplotlib.get_backend(), ours)
"""


def test_every_module_imports_in_one_process_and_defines_no_flags():
    """The package's modules and the benchmarks' (their flags are defined under __main__)."""
    env = {**os.environ, "MPLBACKEND": "svg"}  # a backend no module of ours would pick
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    count, backend, flag_modules = result.stdout.split(maxsplit=2)
    assert int(count) > 50  # every module was found (the __main__ ones too)
    assert backend == "svg"
    assert flag_modules.strip() == "[]"


def test_user_errors_are_value_errors():
    with pytest.raises(ValueError, match="k=0"):
        interval_clustering(np.zeros((4, 4)), k=0)
    assert issubclass(UserError, ValueError)
