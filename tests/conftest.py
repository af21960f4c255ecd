"""Shared fixtures. Four simulated CPU devices, set before JAX is imported anywhere.

The suite is dominated by XLA:CPU compiles of small programs that then run a few steps, so the
tests (and the main.py subprocesses they start, which inherit XLA_FLAGS) compile without LLVM
optimisation: the tiny training step compiled in 23 s instead of 34 s and ran 2x slower
(measured here). Same HLO, same semantics; the tolerances of every comparison hold.
"""

import importlib.util
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402

# Identical programs compiled by several tests (same tiny config) are compiled once per run;
# set in the environment, so the main.py subprocesses of the tests share the cache.
CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".pytest_cache", "jax")
os.environ["JAX_COMPILATION_CACHE_DIR"] = CACHE_DIR
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import tiny_config as tiny_config_file  # noqa: E402
from diffmtl.data.fashion_mnist import DEFAULT_DIR  # noqa: E402

FASHION_MNIST_DIR = DEFAULT_DIR  # The tests' Fashion-MNIST files (DIFFMTL_FASHION_MNIST_DIR).

# Test files of an optional extra (pyproject.toml), not collected where it is not installed:
# a GPU or TPU host without TensorFlow runs the rest of the suite.
EXTRA_TESTS = {"test_tfds_source.py": "tensorflow_datasets", "test_notebook.py": "nbclient"}
collect_ignore = [name for name, mod in EXTRA_TESTS.items() if not importlib.util.find_spec(mod)]


def make_tiny_config(model: str = "toy"):
    """tests/tiny_config.py's config (model 'toy' or 'unet')."""
    return tiny_config_file.get_config(model)


@pytest.fixture
def tiny_config():
    return make_tiny_config()


@pytest.fixture(scope="session")
def devices():
    """The 4 devices of the multi-device tests: simulated CPUs here; on an accelerator host
    (tools/accelerator_run.sh) they run only where it has 4 devices."""
    if jax.default_backend() != "cpu" and jax.device_count() != 4:
        pytest.skip(f"needs 4 devices; this {jax.default_backend()} host has {jax.device_count()}")
    assert jax.device_count() == 4, "tests expect 4 simulated CPU devices"
    return jax.devices()
