"""Where a DiT training step's time goes on this machine: one step under `jax.profiler`, its
XLA:CPU thunk events summed by kind and by the HLO op they came from.

  python -m benchmarks.step_profile [--variant=DiT-S/2] [--batch_size=20] [--top=25]

Profiles configs/imagenet256_dit.py's step with `--variant` on random 32x32x4 latent-shaped
arrays (as benchmarks/dit_efficiency.py) and prints JSON: the step's wall seconds (untraced),
the seconds of each kind of fusion (dot: contains a dot; conv; reduce; elementwise: the rest)
and the --top ops by time, named by their metadata op_name with block indices folded
(block_3 -> block_i), so the twelve blocks' fc1 matmuls add up to one line. On XLA:CPU thunks
run one after another (each on all cores), so the kinds add up to about the step's time.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import re
import tempfile
import time

import jax
from absl import app, flags

from benchmarks import dit_efficiency

FLAGS = flags.FLAGS
_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (.*)")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")


def thunk_seconds(step, state, batch) -> dict[str, float]:
    """{thunk name: seconds} of one traced call of the jitted `step` (which may donate
    `state`)."""
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            jax.block_until_ready(step(state, batch))
        (path,) = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals = collections.Counter()
    for event in events:
        if event.get("ph") == "X":
            totals[event["name"]] += event.get("dur", 0) / 1e6
    return dict(totals)


def classify(hlo_text: str) -> dict[str, tuple[str, str]]:
    """{instruction name: (kind, op_name)} for the compiled module's instructions."""
    instructions, computations, current = {}, collections.defaultdict(list), None
    for line in hlo_text.splitlines():
        if match := _COMPUTATION.match(line):
            current = match.group(1)
        elif match := _INSTRUCTION.match(line):
            instructions[match.group(1)] = match.group(2)
            computations[current].append(match.group(2))
    result = {}
    for name, text in instructions.items():
        called = re.findall(r"calls=%?([\w.\-]+)", text)
        body = " ".join([text, *(" ".join(computations[c]) for c in called)])
        kind = next(
            (
                k
                for k, op in (("dot", " dot("), ("conv", "convolution("), ("reduce", "reduce("))
                if op in body
            ),
            "elementwise",
        )
        op_name = re.search(r'op_name="([^"]*)"', text)
        op_name = re.sub(r"block_\d+", "block_i", op_name.group(1)) if op_name else "?"
        op_name = re.sub(r"^jit\(\w+\)/(while/body/closed_call/)?", "", op_name)
        result[name] = (kind, op_name)
    return result


def main(argv):
    del argv
    exp, state, batch = dit_efficiency.latent_experiment(FLAGS.variant, FLAGS.batch_size)
    step = exp.train_step[False]
    kinds = classify(step.lower(state, batch).compile().as_text())
    state, metrics = step(state, batch)  # compile and warm up
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - start
    thunks = thunk_seconds(step, state, batch)
    by_kind, by_op = collections.Counter(), collections.Counter()
    for name, spent in thunks.items():
        if name in kinds:
            by_kind[kinds[name][0]] += spent
            by_op[kinds[name]] += spent
    print(
        json.dumps(
            {
                "variant": FLAGS.variant,
                "batch_size": FLAGS.batch_size,
                "step_seconds": seconds,
                "thunk_seconds_by_kind": dict(by_kind.most_common()),
                "top_ops": [
                    {"kind": kind, "op": op, "seconds": spent}
                    for (kind, op), spent in by_op.most_common(FLAGS.top)
                ],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    flags.DEFINE_string("variant", "DiT-S/2", "configs/imagenet256_dit.py's model.variant.")
    flags.DEFINE_integer("batch_size", 20, "Batch (k = 5 divides it).")
    flags.DEFINE_integer("top", 25, "How many ops to list.")
    app.run(main)
