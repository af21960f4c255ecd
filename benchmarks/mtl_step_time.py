"""Step time of each MTL method against vanilla, default config at k = 5, in one run, as JSON.

  python -m benchmarks.mtl_step_time [--steps=5]

Rows: vanilla (k = 1, equal weighting, at the faster of M = 1 and M = 5), every MTL method of
diffmtl.mtl.METHODS at k = 5 (Nash-MTL recomputing alpha every step), and a naive reference:
PCGrad with per-cluster gradients from k backward passes over the whole batch (the jacobian of
task_losses, as the authors compute them). Ratios are to vanilla. Targets on this CPU: loss-based
methods <= 1.05, Gram-based ones <= 1.25 and at most 0.5x the naive reference.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
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


def time_method(k: int, method: str, microbatches: int, task_gradients=None) -> dict:
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
    state = experiment.initial_state(config, exp)
    data = input_pipeline.GlobalBatchIterator(exp.source, config.seed, exp.layout, exp.mesh)
    state, metrics = step(state, next(data))
    jax.block_until_ready(metrics)
    batches = [next(data) for _ in range(FLAGS.steps)]
    start = time.perf_counter()
    for batch in batches:
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    return {
        "k": k,
        "method": method,
        "num_microbatches": microbatches,
        "step_s": round((time.perf_counter() - start) / FLAGS.steps, 4),
    }


def main(argv):
    del argv
    vanilla = min((time_method(1, "equal", m) for m in (1, 5)), key=lambda r: r["step_s"])
    rows = {"vanilla": vanilla}
    for name in FLAGS.methods or sorted(mtl.METHODS):
        rows[name] = time_method(5, name, 5)
        rows[name]["kind"] = mtl.METHODS[name].kind
    rows["naive_k_backward_pcgrad"] = time_method(5, "pcgrad", 5, naive_cluster_gradients)
    for row in rows.values():
        row["ratio_to_vanilla"] = round(row["step_s"] / vanilla["step_s"], 3)
    naive = rows["naive_k_backward_pcgrad"]["step_s"]
    for row in rows.values():
        if row.get("kind") == "gram":
            row["ratio_to_naive"] = round(row["step_s"] / naive, 3)
    layout = "per-cluster gradients: one pass per cluster sub-batch (steps.task_gradients)"
    print(json.dumps({"devices": jax.device_count(), "layout": layout, "rows": rows}, indent=2))


if __name__ == "__main__":
    flags.DEFINE_integer("steps", 5, "Timed steps per row (after one compile step).")
    flags.DEFINE_list("methods", [], "Methods to time (default: all of diffmtl.mtl.METHODS).")
    app.run(main)
