"""TensorBoard event files with or without TensorFlow: the run's metric writer, its progress
report and a reader.

Why two writers: clu's writers (the design's choice) import TensorFlow, which most GPU and TPU
images do not ship (2 GB; it cannot travel to an air-gapped host). `EventWriter` writes the same
event files with the `tensorboard` package's protos alone: each Event is one TFRecord (length,
masked CRC-32C, bytes, masked CRC-32C), appended to a file opened with etils.epath (a local path
or a bucket). tensorboard's own EventFileWriter would do the same but imports TensorFlow where
it is installed (tensorboard.compat), which is what we avoid. `create_writer` takes clu's writer
where clu and TensorFlow import, else EventWriter; both log each scalar set to the console, and
TensorBoard and `read_scalars` read either's files. Costs: docs/performance.md
(benchmarks/event_writer.py).
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from absl import logging
from etils import epath
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

EVENT_FILE_PREFIX = "events.out.tfevents"
_WRITER_IDS = itertools.count()


def _record(data: bytes) -> bytes:
    """One TFRecord: uint64 length, its masked CRC-32C, the bytes, their masked CRC-32C."""
    length = struct.pack("<Q", len(data))
    crc = struct.pack("<I", masked_crc32c(length))
    return length + crc + data + struct.pack("<I", masked_crc32c(data))


def read_events(path) -> Iterator[event_pb2.Event]:
    """The Events of one event file, in order; ValueError on a corrupt record (a truncated last
    record, as a killed writer may leave, ends the file)."""
    data = epath.Path(path).read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        header = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[offset + 8 : offset + 12])
        end = offset + 12 + length + 4
        if end > len(data):
            return
        if header_crc != masked_crc32c(header):
            raise ValueError(f"{path}: corrupt record header at byte {offset}")
        body = data[offset + 12 : offset + 12 + length]
        if struct.unpack("<I", data[end - 4 : end])[0] != masked_crc32c(body):
            raise ValueError(f"{path}: corrupt record at byte {offset}")
        yield event_pb2.Event.FromString(body)
        offset = end


def _event_files(logdir: str) -> list:
    return sorted(p for p in epath.Path(logdir).iterdir() if p.name.startswith(EVENT_FILE_PREFIX))


def tensorflow_available() -> bool:
    """Whether clu's TensorFlow-based writers can be used here (clu and tensorflow import)."""
    try:
        return all(importlib.util.find_spec(name) for name in ("clu", "tensorflow"))
    except (ImportError, ValueError):  # A blocked or broken package counts as absent.
        return False


def _png(image: np.ndarray) -> bytes:
    """PNG bytes of one uint8 image [H, W, C] (C = 1, 3 or 4)."""
    image = np.asarray(image, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


class EventWriter:
    """Scalars and images as TensorBoard event files in `logdir`, without TensorFlow.

    The interface the training loop uses of clu's MetricWriter: write_scalars, write_images,
    flush, close. just_logging (non-zero processes of a multi-host run) writes no file.
    """

    def __init__(self, logdir: str, just_logging: bool = False):
        self._file = None
        if not just_logging:
            root = epath.Path(logdir)
            root.mkdir(parents=True, exist_ok=True)
            name = (
                f"{EVENT_FILE_PREFIX}.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
            )
            self._file = (root / name).open("wb")
            self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: event_pb2.Event) -> None:
        self._file.write(_record(event.SerializeToString()))
        self._file.flush()  # A log line at a time: what a killed run leaves is readable.

    def _add(self, step: int, values: list) -> None:
        if self._file is None:
            return
        summary = summary_pb2.Summary(value=values)
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        logging.info("[%d] %s", step, ", ".join(f"{k}={v:.6g}" for k, v in scalars.items()))
        value = summary_pb2.Summary.Value
        self._add(step, [value(tag=k, simple_value=float(v)) for k, v in scalars.items()])

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """images: name -> uint8 [N, H, W, C]; one image tag per picture ('<name>' when N = 1,
        else '<name>/<i>')."""
        values = []
        for name, batch in images.items():
            for i, image in enumerate(batch):
                encoded = summary_pb2.Summary.Image(
                    height=image.shape[0],
                    width=image.shape[1],
                    colorspace=image.shape[2],
                    encoded_image_string=_png(image),
                )
                tag = name if len(batch) == 1 else f"{name}/{i}"
                values.append(summary_pb2.Summary.Value(tag=tag, image=encoded))
        self._add(step, values)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def create_writer(logdir: str, just_logging: bool = False, use_clu: bool | None = None):
    """The run's metric writer: clu's default writer where clu and TensorFlow import (use_clu
    None), else EventWriter; use_clu True / False forces one."""
    if use_clu is None:
        use_clu = tensorflow_available()
    if use_clu:
        from clu import metric_writers

        return metric_writers.create_default_writer(logdir, just_logging=just_logging)
    return EventWriter(logdir, just_logging=just_logging)


class Progress:
    """Every `every_secs`, logs the step, steps per second and the time left, and writes
    'steps_per_sec' (what clu's ReportProgress reported, without TensorFlow).

    The clock starts at the first call, after the first step, so the rate leaves out the
    compile of the run's programs.
    """

    def __init__(
        self,
        num_steps: int,
        writer,
        every_secs: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.num_steps, self.writer, self.every_secs, self.clock = (
            num_steps,
            writer,
            every_secs,
            clock,
        )
        self._since: tuple[int, float] | None = None

    def __call__(self, step: int) -> float | None:
        """Records that `step` steps are done; returns the rate when it reports one."""
        now = self.clock()
        if self._since is None:
            self._since = (step, now)
            return None
        first, then = self._since
        if now - then < self.every_secs and step < self.num_steps:
            return None
        self._since = (step, now)
        if step == first or now <= then:
            return None
        rate = (step - first) / (now - then)
        left = (self.num_steps - step) / rate
        logging.info("step %d/%d: %.3g steps/s, %.0f s left", step, self.num_steps, rate, left)
        self.writer.write_scalars(step, {"steps_per_sec": rate})
        return rate


def read_scalars(logdir: str, prefix: str = "") -> dict[str, dict[int, float]]:
    """tag -> {step: value} of the scalar summaries in `logdir`'s event files whose tag starts
    with `prefix`: EventWriter's simple values and clu's tensors alike (no TensorFlow)."""
    from tensorboard.util import tensor_util

    out: dict[str, dict[int, float]] = {}
    for path in _event_files(logdir):
        for event in read_events(path):
            for value in event.summary.value:
                if not value.tag.startswith(prefix):
                    continue
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    number = value.simple_value
                elif kind == "tensor":  # clu's scalars; its images are string tensors.
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.dtype.kind not in "fiu" or array.size != 1:
                        continue
                    number = array.item()
                else:
                    continue
                out.setdefault(value.tag, {})[int(event.step)] = float(number)
    return out


def read_tags(logdir: str) -> set[str]:
    """Every summary tag in `logdir`'s event files (scalars, images, ...)."""
    return {
        value.tag
        for path in _event_files(logdir)
        for event in read_events(path)
        for value in event.summary.value
    }
