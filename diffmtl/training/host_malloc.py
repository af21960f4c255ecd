"""glibc's malloc under XLA:CPU: a hint when the transparent-huge-page tunable is off.

XLA:CPU allocates a training step's activations and temporaries at every call and frees them at
its end. glibc serves buffers above its mmap threshold (at most 32 MiB) with a fresh mmap and
returns them with munmap, so every step touches gigabytes of new 4 KiB pages, one page fault
each. `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc >= 2.35) makes malloc ask for 2 MiB pages;
on the 2-core VM of README's Efficiency paragraph it took the DiT-S/2 step (batch 20) from
12.9 s to 5.7 s and the Fashion-MNIST DiT's from 1.98 s to 1.26 s (benchmarks/host_malloc.py).
glibc reads it when the process starts, so it must be in the environment of `python main.py`
(the Makefile exports it); a running process can only be told, which is what this module does.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

HUGETLB = "glibc.malloc.hugetlb=1"


def advice(
    backend: str,
    environ: Mapping[str, str] = os.environ,
    system: str = sys.platform,
    libc: str | None = None,
) -> str | None:
    """One line recommending the tunable when XLA runs on the CPU of a glibc Linux process
    without it, else None."""
    if libc is None:
        libc = platform.libc_ver()[0]
    if backend != "cpu" or not system.startswith("linux") or libc != "glibc":
        return None
    if "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", ""):
        return None
    return (
        f"XLA:CPU pays a page fault per 4 KiB of every step's buffers: `export GLIBC_TUNABLES="
        f"{HUGETLB}` before starting Python made CPU training steps up to 2x faster "
        f"(README, Efficiency; `make demo` and `make test` set it)"
    )
