"""A run's compiled programs, compiled ahead of its first step and concurrently.

XLA compiles one program on one core. A run of a Gram-based MTL method needs two step programs
(Nash-MTL: the per-cluster-gradient step every update_every steps, the weighted-loss step
between), and the live task-gradient cosine a third; compiled one after the other at their first
use, the run starts after the sum of their compile times. Here each is traced (in order: tracing
holds Python's lock) and then compiled on its own thread, so on a host with as many cores the run
starts after the longest. The executables are the ones jit would build (the same lowering), so
results are bitwise those of the jitted functions.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from diffmtl.training.experiment import Experiment

# Steps ahead scanned for the step programs a method uses (host-side needs_task_grads calls).
HORIZON = 1000


class Programs(NamedTuple):
    """with_task_grads -> step(state, batch), and cosine(state, batch) (None when unused)."""

    train_step: dict[bool, Callable]
    task_gradient_cosine: Callable | None


def step_flags(exp: Experiment, config, first: int, num_steps: int) -> list[bool]:
    """The with_task_grads values of steps first..num_steps-1 (the next HORIZON of them), in
    order of first use."""
    flags = {}
    for step in range(first, min(num_steps, first + HORIZON)):
        flags.setdefault(exp.method.needs_task_grads(step, config.mtl), None)
    return list(flags)


def compile_programs(exp: Experiment, config, state, batch, first: int, num_steps: int):
    """Programs of the run from step `first` with this state and batch (shapes and shardings of
    every later step). A step program not foreseen within HORIZON steps stays the jitted one."""
    lowered = {flag: exp.train_step[flag].lower(state, batch)
               for flag in step_flags(exp, config, first, num_steps)}  # fmt: skip
    cosine = None
    if config.task_gradient_cosine_every_steps and config.clustering.k > 1:
        cosine = exp.task_gradient_cosine.lower(state, batch)
    jobs = [*lowered.values(), *([cosine] if cosine is not None else [])]
    with ThreadPoolExecutor(max(1, len(jobs))) as pool:
        compiled = list(pool.map(lambda program: program.compile(), jobs))
    steps = dict(exp.train_step)
    steps.update(zip(lowered, compiled[: len(lowered)], strict=True))
    return Programs(steps, compiled[-1] if cosine is not None else None)
