"""The training loop's metric writers compared: clu's (TensorFlow) and events.EventWriter (the
tensorboard package alone), each in a fresh process: the import and first-writer cost a run
pays once, and the time per write_scalars of a log line's scalars (the loop's steady cost).

  python -m benchmarks.event_writer [--writes=200] [--scalars=30]

Prints JSON per writer. Figures: docs/performance.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app, flags

CHILD = """
import json, os, sys, tempfile, time
start = time.perf_counter()
from diffmtl.training import events
writer = events.create_writer(tempfile.mkdtemp(), use_clu={use_clu})
scalars = {{f"train/s_{{i}}": 0.5 * i for i in range({scalars})}}
writer.write_scalars(0, scalars)
first = time.perf_counter() - start
start = time.perf_counter()
for step in range(1, {writes} + 1):
    writer.write_scalars(step, scalars)
writer.flush()
each = (time.perf_counter() - start) / {writes}
print(json.dumps({{"writer": type(writer).__name__, "start_s": first, "write_ms": 1e3 * each,
                  "tensorflow_imported": "tensorflow" in sys.modules}}))
"""


def measure(use_clu: bool, writes: int, scalars: int) -> dict:
    code = CHILD.format(use_clu=use_clu, writes=writes, scalars=scalars)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    return {"use_clu": use_clu, **json.loads(out.strip().splitlines()[-1])}


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    for use_clu in (True, False):
        print(json.dumps(measure(use_clu, FLAGS.writes, FLAGS.scalars)), flush=True)


if __name__ == "__main__":
    flags.DEFINE_integer("writes", 200, "write_scalars calls timed per writer.")
    flags.DEFINE_integer("scalars", 30, "Scalars per call (a k = 5 log line has about 30).")
    app.run(main)
