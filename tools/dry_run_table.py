"""docs/scaling.md's dry-run tables from the logs of tools/tpu_dry_run_table.sh: one row per step.

  python -m tools.dry_run_table workdirs/tpu_table2 [workdirs/gpu_table ...]

Reads each <name>.log (main.py's report under /usr/bin/time -v) and prints a markdown table:
the command, the target, each step's memory (temporaries; the compiler's peak), generated code,
GFLOPs and roofline / compiler time per step, the fit line, wall time and resident memory of
the compile; a refused program prints its one-line error.
"""

from __future__ import annotations

import glob
import os
import re
import sys

STEP = re.compile(
    r"^(?P<step>[^:]+): (?P<mem>[\d.]+) GiB per device \((?P<temp>[\d.]+) GiB temporaries"
    r"(?:, compiler's peak (?P<peak>[\d.]+) GiB)?(?:, code (?P<code>[\d.]+) MiB)?"
    r"(?:, (?P<remat>\d+) rematerialised instructions)?\)"
    r"(?:, (?P<gflops>[\d.]+) GFLOPs)?"
)
TIME = re.compile(r">= (?P<bound>[\d.]+) ms per step .*?(?:estimate (?P<est>[\d.]+) ms)?$")


def rows(path: str) -> list[str]:
    with open(path) as f:
        text = f.read()
    command = re.search(r'Command being timed: ".*?main.py (.*?)"', text, re.S)
    args = re.sub(r"\s+", " ", command.group(1)) if command else os.path.basename(path)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    compile_cost = (
        f"{wall.group(1) if wall else '?'}, {int(rss.group(1)) / 2**20:.1f} GB" if rss else "?"
    )
    lines = text.splitlines()
    error = next((ln for ln in lines if ln.startswith("error:")), "")
    if error:
        return [f"| `{args}` | {error[len('error: ') :]} | | | | | {compile_cost} |"]
    out, first = [], True
    for i, line in enumerate(lines):
        found = STEP.match(line)
        if not found or found["step"].startswith(("backend", "parameters")):
            continue
        step = found["step"]
        memory = f"{found['mem']} ({found['temp']}; {found['peak'] or '-'})"
        code = f"{found['code']} MiB" if found["code"] else "-"
        if found["remat"]:
            code += f", {found['remat']} remat"
        timing = TIME.search(lines[i + 1]) if i + 1 < len(lines) else None
        times = f"{timing['bound']} / {timing['est'] or '-'}" if timing else "-"
        head = f"`{args}`" if first else ""
        tail = compile_cost if first else ""
        out.append(
            f"| {head} | {step} | {memory} | {code} | {found['gflops'] or '-'} | {times} | {tail} |"
        )
        first = False
    fit = next((ln for ln in lines if ln.startswith(("fits in", "does NOT fit"))), "")
    if fit:
        out.append(f"| | {fit} | | | | | |")
    return out


def main(directories: list[str]) -> None:
    print(
        "| command (`JAX_PLATFORMS=cpu python main.py ...`) | step | memory per device, GiB "
        "(temporaries; compiler's peak) | code | GFLOPs | ms: roofline / compiler "
        "| compile: wall, RSS |"
    )
    print("|---|---|---|---|---|---|---|")
    for directory in directories:
        for path in sorted(glob.glob(os.path.join(directory, "*.log"))):
            done = path[: -len(".log")] + ".done"
            if os.path.exists(done):
                print("\n".join(rows(path)))


if __name__ == "__main__":
    main(sys.argv[1:])
