"""The GLIBC_TUNABLES hint (diffmtl/training/host_malloc.py): when it is given, and that the
tunable it names is what glibc reads."""

import glob
import os
import subprocess
import sys

import pytest

from diffmtl.training import host_malloc


@pytest.mark.parametrize(
    "backend, environ, system, libc, expected",
    [
        ("cpu", {}, "linux", "glibc", True),
        ("cpu", {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "linux", "glibc", True),
        ("cpu", {"GLIBC_TUNABLES": host_malloc.HUGETLB}, "linux", "glibc", False),
        ("cpu", {"GLIBC_TUNABLES": "a=1:glibc.malloc.hugetlb=2"}, "linux", "glibc", False),
        ("gpu", {}, "linux", "glibc", False),
        ("tpu", {}, "linux", "glibc", False),
        ("cpu", {}, "darwin", "", False),
        ("cpu", {}, "linux", "musl", False),
    ],
)
def test_advice_only_for_glibc_cpu_without_the_tunable(backend, environ, system, libc, expected):
    hint = host_malloc.advice(backend, environ, system, libc)
    assert (hint is not None) == expected
    if expected:
        assert host_malloc.HUGETLB in hint and "\n" not in hint


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables are Linux's")
def test_glibc_reads_the_tunable():
    """A process started with the tunable reports it in glibc's own list (ld.so
    --list-tunables), so the name the hint gives cannot silently rot."""
    loaders = sorted(glob.glob("/lib64/ld-linux-*.so.*") + glob.glob("/lib/ld-linux-*.so.*"))
    if not loaders:
        pytest.skip("no glibc dynamic loader")
    env = {**os.environ, "GLIBC_TUNABLES": host_malloc.HUGETLB}
    listed = subprocess.run(
        [loaders[0], "--list-tunables"], env=env, capture_output=True, text=True, check=True
    ).stdout
    lines = [x for x in listed.splitlines() if x.startswith("glibc.malloc.hugetlb:")]
    if not lines:
        pytest.skip("glibc < 2.35 has no glibc.malloc.hugetlb")
    assert lines[0].split(":")[1].split()[0] == "0x1"
