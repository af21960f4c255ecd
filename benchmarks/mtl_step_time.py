"""Step time of each MTL method against vanilla, default config at k = 5, in one run, as JSON.

  python -m benchmarks.mtl_step_time [--steps=5]

Rows: vanilla (k = 1, equal weighting, at the faster of M = 1 and M = 5), every MTL method of
diffmtl.mtl.METHODS at k = 5 (Nash-MTL recomputing alpha every step), and a naive reference:
PCGrad with per-cluster gradients from k backward passes over the whole batch (the jacobian of
task_losses, as the authors compute them). Each row is timed alternately with vanilla (A B A B
...), so that a change of this shared machine's load hits both. Ratios are to vanilla. Targets
on this CPU: loss-based methods <= 1.05, Gram-based ones <= 1.25 and at most 0.5x the naive
reference.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from configs import fashion_mnist
from diffmtl import mtl, tasks
from diffmtl.data import pipeline as input_pipeline
from diffmtl.training import experiment, steps

FLAGS = flags.FLAGS


def naive_cluster_gradients(loss_fn, params, batch, loop, grad_dtype):
    """g_i by k backward passes over the whole batch: vmap of the VJP of task_losses [k]."""
    del loop, grad_dtype

    def all_task_losses(p):
        num_microbatches = jax.tree.leaves(batch)[0].shape[0]
        per_microbatch = [
            tasks.task_losses(loss_fn(p, *jax.tree.map(lambda a, m=m: a[m], batch)))
            for m in range(num_microbatches)
        ]
        return jnp.mean(jnp.stack(per_microbatch), axis=0)

    losses, vjp = jax.vjp(all_task_losses, params)
    (grads,) = jax.vmap(vjp)(jnp.eye(losses.shape[0], dtype=losses.dtype))
    return grads, losses


def build_step(k: int, method: str, microbatches: int, task_gradients=None):
    """A function running one compiled training step of the default config (compiled and
    warmed up here); each call advances its own state on its own data."""
    config = fashion_mnist.get_config()
    config.clustering.k = k
    config.mtl.method = method
    config.mtl.nash_mtl.update_every = 1
    config.train.num_microbatches = microbatches
    exp = experiment.build_experiment(config)
    step = exp.train_step[exp.method.needs_task_grads(0, config.mtl)]
    if task_gradients is not None:
        step = steps.make_train_step(
            config, exp.model, exp.diffusion, exp.tx, exp.method, exp.mesh, True, task_gradients
        )
    holder = {"state": experiment.initial_state(config, exp)}
    data = input_pipeline.GlobalBatchIterator(exp.source, config.seed, exp.layout, exp.mesh)
    batches = [next(data) for _ in range(2)]

    def run_once() -> float:
        start = time.perf_counter()
        holder["state"], metrics = step(holder["state"], batches[0])
        jax.block_until_ready(metrics)
        batches.reverse()
        return time.perf_counter() - start

    run_once()  # the compile
    return run_once


def interleaved(first, second, steps: int) -> tuple[float, float]:
    """Median step seconds of two step functions timed alternately (A B A B ...), so that a
    change of the machine's load during the run hits both alike."""
    a, b = [], []
    for _ in range(steps):
        a.append(first())
        b.append(second())
    return float(np.median(a)), float(np.median(b))


def main(argv):
    del argv
    candidates = {m: build_step(1, "equal", m) for m in (1, 5)}
    times = {
        m: float(np.median([fn() for _ in range(FLAGS.steps)])) for m, fn in candidates.items()
    }
    best = min(times, key=times.get)
    vanilla = candidates[best]
    rows = {"vanilla": {"k": 1, "method": "equal", "num_microbatches": best}}
    names = FLAGS.methods or sorted(mtl.METHODS)
    builds = {name: (name, None) for name in names}
    builds["naive_k_backward_pcgrad"] = ("pcgrad", naive_cluster_gradients)
    for row, (name, task_gradients) in builds.items():
        method_step = build_step(5, name, 5, task_gradients)
        vanilla_s, method_s = interleaved(vanilla, method_step, FLAGS.steps)
        rows[row] = {"k": 5, "method": name, "num_microbatches": 5, "kind": mtl.METHODS[name].kind,
                     "step_s": round(method_s, 4), "vanilla_step_s": round(vanilla_s, 4),
                     "ratio_to_vanilla": round(method_s / vanilla_s, 3)}  # fmt: skip
        del method_step
    naive = rows.pop("naive_k_backward_pcgrad")
    for row in rows.values():
        if row.get("kind") == "gram":
            row["ratio_to_naive"] = round(row["ratio_to_vanilla"] / naive["ratio_to_vanilla"], 3)
    rows["naive_k_backward_pcgrad"] = naive
    layout = "per-cluster gradients: one pass per cluster sub-batch (steps.task_gradients)"
    print(json.dumps({"devices": jax.device_count(), "layout": layout, "rows": rows}, indent=2))


if __name__ == "__main__":
    flags.DEFINE_integer("steps", 5, "Timed steps per row and of vanilla beside it (medians).")
    flags.DEFINE_list("methods", [], "Methods to time (default: all of diffmtl.mtl.METHODS).")
    app.run(main)
