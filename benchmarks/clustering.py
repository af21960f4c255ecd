"""Speed of interval clustering, cost construction and DP timed separately, as JSON.

  python -m benchmarks.clustering [--repeats=5]

Targets (issue 3): T = 1000, k = 5 in at most 25 ms and T = 4000, k = 8 in at most 1 s, cost
construction included. Figures are the best of --repeats runs (this machine is shared).
"""

from __future__ import annotations

import json
import time

import numpy as np
from absl import app, flags

from diffmtl.clustering import costs, dp
from diffmtl.diffusion import schedule

FLAGS = flags.FLAGS


def best_seconds(fn) -> float:
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cost_builders(num_timesteps: int) -> dict:
    abar = schedule.alphas_cumprod(schedule.beta_schedule("linear", num_timesteps))
    t = np.arange(num_timesteps)
    tas = np.exp(-np.abs(t[:, None] - t[None, :]) / (num_timesteps / 10))  # A smooth stand-in.
    return {
        "timestep": lambda: costs.timestep_cost(num_timesteps),
        "snr": lambda: costs.snr_cost(schedule.snr(abar)),
        "log_snr": lambda: costs.log_snr_cost(schedule.log_snr(abar)),
        "gradient": lambda: costs.gradient_cost(tas),
    }


def measure(num_timesteps: int, k: int) -> dict:
    builders = cost_builders(num_timesteps)
    construction = {name: best_seconds(build) for name, build in builders.items()}
    cost = builders["log_snr"]()
    dp_seconds = best_seconds(lambda: dp.interval_clustering(cost, k))
    return {
        "T": num_timesteps,
        "k": k,
        "cost_construction_s": {name: round(s, 5) for name, s in construction.items()},
        "dp_s": round(dp_seconds, 5),
        "total_s_worst_cost": round(max(construction.values()) + dp_seconds, 5),
    }


def main(argv):
    del argv
    print(json.dumps({"results": [measure(1000, 5), measure(4000, 8)]}, indent=2))


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, never on import)."""
    flags.DEFINE_integer("repeats", 5, "Runs per figure; the best is reported.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
