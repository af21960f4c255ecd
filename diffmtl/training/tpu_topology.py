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

from diffmtl.errors import UserError

# HBM per chip, GiB (Google Cloud's TPU documentation, "TPU versions": v4 32 GiB, v5e 16 GiB,
# v5p 95 GiB, v6e 32 GiB).
HBM_GIB = {"v4": 32.0, "v5e": 16.0, "v5p": 95.0, "v6e": 32.0}
NAMES = "v4:AxBxC (megacore), v5e:AxB, v5p:AxBxC, v6e:AxB; e.g. v5e:2x4 = v5e-8, v5p:2x2x4 = v5p-32"
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


def hbm_gib(name: str) -> float:
    return HBM_GIB[parse(name)[0]]
