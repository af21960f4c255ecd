"""Task affinity at scale, as JSON: seconds, memory and sketch error of a full T x T TAS.

  python -m benchmarks.task_affinity [--num_timesteps=0] [--num_images=256] [--dim=8192]
                                     [--chunk_size=4] [--error_grid=8]

One checkpoint of the default model (its initial weights plus N(0, 0.01^2) noise, so that
every layer has a gradient: speed does not depend on the values) on N training images. Figures:
  seconds, seconds_per_timestep  the whole TAS (all T timesteps unless --num_timesteps), first
                                 chunk (compile) excluded and reported apart;
  peak_rss_gib                   the process's peak resident memory (on CPU the device buffers
                                 live there too), next to the O(T d + params) it should track:
                                 sketch_gib (T x d float32) and params_gib;
  sketch_error                   on a grid of --error_grid timesteps, the largest |projected -
                                 exact| cosine next to the documented scale sqrt(2 / d).
"""

from __future__ import annotations

import json
import resource
import time

import jax
import numpy as np
from absl import app, flags

from configs import fashion_mnist
from diffmtl.analysis import tas_command
from diffmtl.diffusion.samplers import respaced_timesteps
from diffmtl.training import experiment

FLAGS = flags.FLAGS


def _config(num_timesteps: int, dim: int):
    config = fashion_mnist.get_config()
    config.analysis.tas_num_images = FLAGS.num_images
    config.analysis.tas_num_timesteps = num_timesteps
    config.analysis.tas_projection_dim = dim
    config.analysis.tas_chunk_size = FLAGS.chunk_size
    return config


def _gib(num_bytes: float) -> float:
    return round(num_bytes / 2**30, 3)


def main(argv):
    del argv
    config = _config(FLAGS.num_timesteps, FLAGS.dim)
    exp = experiment.build_experiment(config)
    key = jax.random.PRNGKey(1)
    params = jax.tree.map(
        lambda p: p + 0.01 * jax.random.normal(jax.random.fold_in(key, p.size), p.shape),
        experiment.initial_state(config, exp).params,
    )
    x0, noise, _ = tas_command.affinity_inputs(config, exp)
    num_timesteps = config.diffusion.num_timesteps
    grid = respaced_timesteps(num_timesteps, FLAGS.num_timesteps or num_timesteps)

    num_params = sum(p.size for p in jax.tree.leaves(params))
    affinity = tas_command.make_affinity(config, exp, num_params)
    start = time.perf_counter()  # one chunk: compile + first backward pass
    affinity(params, x0, noise, grid[: FLAGS.chunk_size])
    first_chunk = time.perf_counter() - start
    start = time.perf_counter()
    tas = affinity(params, x0, noise, grid)
    seconds = time.perf_counter() - start
    result = {
        "device": jax.devices()[0].device_kind,
        "num_devices": jax.device_count(),
        "T": len(grid),
        "N": FLAGS.num_images,
        "d": FLAGS.dim,
        "chunk_size": FLAGS.chunk_size,
        "num_params": num_params,
        "first_chunk_s": round(first_chunk, 1),
        "seconds": round(seconds, 1),
        "seconds_per_timestep": round(seconds / len(grid), 3),
        "peak_rss_gib": _gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
        "sketch_gib": _gib(len(grid) * FLAGS.dim * 4),
        "params_gib": _gib(num_params * 4),
        "tas_min": round(float(tas.min()), 4),
    }
    if FLAGS.error_grid:
        rows = respaced_timesteps(len(grid), FLAGS.error_grid)  # a subset of the grid
        small = grid[rows]
        exact = tas_command.make_affinity(_config(FLAGS.error_grid, 0), exp, num_params)(
            params, x0, noise, small
        )
        projected = tas[np.ix_(rows, rows)]
        result["sketch_error"] = {
            "grid": small.tolist(),
            "max_abs_error": round(float(np.abs(projected - exact).max()), 4),
            "sqrt_2_over_d": round(float(np.sqrt(2 / FLAGS.dim)), 4),
        }
    print(json.dumps(result, indent=2))


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, never on import)."""
    flags.DEFINE_integer("num_timesteps", 0, "Grid timesteps G (0: all T).")
    flags.DEFINE_integer("num_images", 256, "N images per task loss.")
    flags.DEFINE_integer("dim", 8192, "Count-sketch dimension d.")
    flags.DEFINE_integer("chunk_size", 4, "Timesteps per backward pass.")
    flags.DEFINE_integer("error_grid", 8, "Grid of the exact-vs-projected check (0: skip).")


if __name__ == "__main__":
    define_flags()
    app.run(main)
