"""Shared fixtures. Four simulated CPU devices, set before JAX is imported anywhere.

The suite is dominated by XLA:CPU compiles of small programs that then run a few steps, so the
tests (and the main.py subprocesses they start, which inherit XLA_FLAGS) compile without LLVM
optimisation: the tiny training step compiled in 23 s instead of 34 s and ran 2x slower
(measured here). Same HLO, same semantics; the tolerances of every comparison hold.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402

# Identical programs compiled by several tests (same tiny config) are compiled once per run.
CACHE_DIR = os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "jax")
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from configs import fashion_mnist  # noqa: E402

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def make_tiny_config():
    """The default config shrunk to a UNet that compiles and runs in seconds on CPU."""
    config = fashion_mnist.get_config()
    config.model.base_channels = 8
    config.model.num_groups = 4
    config.model.channel_mult = (1, 2)
    config.model.num_res_blocks = 1
    config.model.attention_resolutions = (14,)
    config.model.num_heads = 2
    config.train.batch_size = 40
    config.train.num_microbatches = 1
    config.train.num_train_steps = 4
    config.train.warmup_steps = 0
    config.train.learning_rate = 1e-3
    config.log_every_steps = 2
    config.checkpoint_every_steps = 2
    config.sampling.num_steps = 3
    config.sampling.batch_size = 8
    config.sampling.grid_size = 8
    config.eval.num_samples = 8
    config.eval.num_reference = 64
    config.eval.batch_size = 32
    config.eval.val_num_images = 8
    config.eval.val_num_timesteps = 10  # at least one grid point in each of the 5 clusters
    return config


@pytest.fixture
def tiny_config():
    return make_tiny_config()


@pytest.fixture(scope="session")
def devices():
    assert jax.device_count() == 4, "tests expect 4 simulated CPU devices"
    return jax.devices()
