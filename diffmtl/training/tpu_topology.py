"""TPU slices without a TPU: the compile-only devices of a topology, for dry runs on a CPU host.

With libtpu installed (`pip install "diffmtl[tpu-dryrun]"`; Linux x86-64; it must match the jax
release), jax.experimental.topologies describes any TPU slice by name, and a program lowered with
shardings over its devices is compiled by the real TPU compiler: its per-chip memory, generated
code and FLOPs are the TPU's, not XLA:CPU's estimate. Run such a process with JAX_PLATFORMS=cpu
(otherwise JAX first tries, and fails, to open a TPU backend).

Names are generation:shape, e.g. v5e:2x4 (a v5e-8), v5p:2x2x2 (v5p-16's 8 chips), v4:2x2x4
(v4-32, megacore), v6e:2x2; cloud names such as v5litepod-8 are not accepted.
"""

from __future__ import annotations

import importlib.util
import math
import os

from diffmtl.errors import UserError

# HBM per chip, GiB (Google Cloud's TPU documentation, "TPU versions": v4 32 GiB, v5e 16 GiB,
# v5p 95 GiB, v6e 32 GiB).
HBM_GIB = {"v4": 32.0, "v5e": 16.0, "v5p": 95.0, "v6e": 32.0}
# Peak bf16 TFLOP/s and HBM GB/s per chip (the same pages: v4 275 and 1,200; v5e 197 and 819;
# v5p 459 and 2,765; v6e 918 and 1,640). jnp matmuls and convolutions in float32 run at the
# bf16 rate on TPU at jax's default precision, so the bf16 peak is the one that applies.
PEAK_TFLOPS = {"v4": 275.0, "v5e": 197.0, "v5p": 459.0, "v6e": 918.0}
HBM_GBPS = {"v4": 1200.0, "v5e": 819.0, "v5p": 2765.0, "v6e": 1640.0}
NAMES = (
    "v4:AxBxC (megacore), v5e:AxB, v5p:AxBxC, v6e:AxB; e.g. v5e:2x4 = v5e-8, v5p:2x2x4 = v5p-32"
    " (or a GPU target: h100:N, h200:N)"
)
INSTALL = "pip install 'diffmtl[tpu-dryrun]' (libtpu for this jax; Linux x86-64 only)"


def parse(name: str) -> tuple[str, tuple[int, ...]]:
    """'v5e:2x4' -> ('v5e', (2, 4)); UserError naming the accepted forms otherwise."""
    generation, _, shape = name.partition(":")
    try:
        dims = tuple(int(d) for d in shape.split("x"))
    except ValueError:
        dims = ()
    three_d = generation in ("v4", "v5p")
    if generation not in HBM_GIB or len(dims) != (3 if three_d else 2) or min(dims) < 1:
        raise UserError(f"--topology={name} is not a TPU topology name: use {NAMES}")
    return generation, dims


def devices(name: str) -> list:
    """The compile-only devices of topology `name` (one per chip)."""
    generation, dims = parse(name)
    if importlib.util.find_spec("libtpu") is None:
        raise UserError(f"--topology needs libtpu to compile for a TPU: {INSTALL}")
    from jax.experimental import topologies

    # libtpu locks /tmp/libtpu_lockfile so that two processes never drive one TPU; compile-only
    # devices drive none, and without this a second dry run on the host fails (ABORTED).
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    kwargs = {}
    if generation == "v4":
        kwargs["chip_config_name"] = "megacore"
    if generation in ("v5e", "v6e"):  # one host holds up to 2x4 chips
        kwargs["chips_per_host_bounds"] = (min(dims[0], 2), min(dims[1], 4), 1)
    shape = f"{generation}:{'x'.join(map(str, dims))}"
    try:
        topology = topologies.get_topology_desc(shape, platform="tpu", **kwargs)
    except Exception as e:  # libtpu's own error for a shape it does not know
        raise UserError(f"--topology={name}: libtpu refused it ({str(e).splitlines()[0]})") from e
    found = list(topology.devices)
    if len(found) != math.prod(dims):
        raise UserError(f"--topology={name} gave {len(found)} chips, not {math.prod(dims)}")
    return found


def usable_gib(name: str) -> float:
    """HBM per chip (GiB): a TPU program may use all of it."""
    return HBM_GIB[parse(name)[0]]


def roofline_seconds(name: str, flops: float, bytes_accessed: float) -> float:
    """A lower bound on one chip's time for a program: max(FLOPs at the peak, bytes at the HBM
    bandwidth). Not a prediction: it ignores collectives, launch costs and the overlap the
    compiler schedules (its own optimal_seconds, where given, is the better estimate)."""
    generation = parse(name)[0]
    compute = flops / (PEAK_TFLOPS[generation] * 1e12)
    return max(compute, bytes_accessed / (HBM_GBPS[generation] * 1e9))
