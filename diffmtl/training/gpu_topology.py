"""NVIDIA GPUs without a GPU: compile-only devices of a GPU target, for dry runs on a CPU host.

With jax's CUDA plugin installed (`pip install "diffmtl[gpu-dryrun]"`; no CUDA libraries or
driver needed), jax.experimental.topologies builds compile-only CUDA devices from a target
description (a GpuTargetConfigProto in text form), and XLA's GPU compiler compiles the program
for them: its buffer assignment gives the per-device memory an H100 would allocate. Without a
device XLA reports no cost analysis and does not autotune (convolution algorithms and their
workspaces, GEMM tilings; Triton GEMMs are turned off, as XLA cannot tile some of them blind),
so FLOPs come from the CPU dry run and the memory may differ from a real run's by those.

Names are gpu:count, e.g. h100:8 (one host of 8) or h200:16 (two hosts of 8).
"""

from __future__ import annotations

import importlib.util
import os

from diffmtl.errors import UserError

# Per GPU: NVIDIA's datasheets (H100 SXM 80 GB HBM3 at 3.35 TB/s; H200 141 GB HBM3e at
# 4.8 TB/s; both 132 SMs, 50 MB L2, compute capability 9.0, boost clock 1.98 GHz).
TARGETS = {
    "h100": dict(name="NVIDIA H100 80GB HBM3", memory_bytes=80 * 10**9, bandwidth=3.35e12),
    "h200": dict(name="NVIDIA H200", memory_bytes=141 * 10**9, bandwidth=4.8e12),
}
GPUS_PER_HOST = 8
NAMES = "h100:N or h200:N (N GPUs, 8 per host), e.g. h100:8"
INSTALL = "pip install 'diffmtl[gpu-dryrun]' (jax's CUDA 12 plugin for this jax; Linux x86-64)"
# jax preallocates this share of a GPU's memory and allocates within it.
MEM_FRACTION_VARIABLE, DEFAULT_MEM_FRACTION = "XLA_PYTHON_CLIENT_MEM_FRACTION", 0.75


def is_gpu(name: str) -> bool:
    return name.partition(":")[0] in TARGETS


def parse(name: str) -> tuple[str, int]:
    """'h100:8' -> ('h100', 8); UserError naming the accepted forms otherwise."""
    gpu, _, count = name.partition(":")
    n = int(count) if count.isdigit() else 0
    if gpu not in TARGETS or n < 1 or (n > GPUS_PER_HOST and n % GPUS_PER_HOST):
        raise UserError(f"--topology={name} is not a GPU target name: use {NAMES}")
    return gpu, n


def target_config(gpu: str) -> str:
    """The GpuTargetConfigProto text XLA's GPU compiler reads in place of a device's query."""
    t = TARGETS[gpu]
    return f"""
gpu_device_info {{
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 shared_memory_per_block_optin: 232448
  threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: {int(t["bandwidth"])} l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: {t["memory_bytes"]}
  registers_per_core_limit: 65536 registers_per_block_limit: 65536
  cuda_compute_capability {{ major: 9 minor: 0 }}
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
runtime_version {{ major: 12 minor: 8 }}
device_description_str: "{t["name"]}"
"""


def devices(name: str) -> list:
    """The compile-only CUDA devices of `name` (one per GPU)."""
    gpu, n = parse(name)
    found = importlib.util.find_spec("jax_plugins") and any(
        importlib.util.find_spec(f"jax_plugins.xla_cuda{v}") for v in (12, 13)
    )
    if not found:
        raise UserError(f"--topology={name} needs jax's CUDA plugin: {INSTALL}")
    # Without a device XLA cannot autotune Triton GEMM tilings and fails on some (DiT-XL/2:
    # "Couldn't find output tile sizes"); cuBLAS GEMMs compile. Read when XLA first parses
    # its flags, so only in a process that has not built a backend yet (main.py's dry run).
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_gpu_enable_triton_gemm" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_enable_triton_gemm=false".strip()
    from jax.experimental import topologies

    hosts, per_host = max(n // GPUS_PER_HOST, 1), min(n, GPUS_PER_HOST)
    try:
        topology = topologies.get_topology_desc(
            platform="cuda", target_config=target_config(gpu), topology=f"1x{hosts}x{per_host}"
        )
    except Exception as e:  # the plugin's own error (e.g. a jax it does not match)
        raise UserError(
            f"--topology={name}: the CUDA plugin refused it ({str(e)[:200]}); without a GPU "
            "run with JAX_PLATFORMS=cpu (the plugin does not register otherwise)"
        ) from e
    return list(topology.devices)


def usable_gib(name: str) -> float:
    """What jax may allocate per GPU: the preallocated share of its memory (GiB)."""
    fraction = float(os.environ.get(MEM_FRACTION_VARIABLE, DEFAULT_MEM_FRACTION))
    return TARGETS[parse(name)[0]]["memory_bytes"] * fraction / 2**30
