"""TensorBoard event files with or without TensorFlow: the run's metric writer, its progress
report and a reader.

Why two writers: clu's writers (the design's choice) import TensorFlow, which most GPU and TPU
images do not ship (2 GB; it cannot travel to an air-gapped host). The `tensorboard` package
alone writes the same event files: `EventWriter` builds the Summary protos itself and appends
them with tensorboard's own EventFileWriter (a TFRecord file; no TF). `create_writer` takes
clu's writer where clu and TensorFlow import, else EventWriter; both log every scalar set to the
console too, and TensorBoard and `read_scalars` read either's files.
"""

from __future__ import annotations

import importlib.util
import io
import os
import time
from collections.abc import Callable, Mapping

import numpy as np
from absl import logging
from PIL import Image

EVENT_FILE_PREFIX = "events.out.tfevents"


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
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            os.makedirs(logdir, exist_ok=True)
            self._file = EventFileWriter(logdir)

    def _add(self, step: int, values: list) -> None:
        if self._file is None:
            return
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=values)
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._file.add_event(event)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        from tensorboard.compat.proto import summary_pb2

        logging.info("[%d] %s", step, ", ".join(f"{k}={v:.6g}" for k, v in scalars.items()))
        value = summary_pb2.Summary.Value
        self._add(step, [value(tag=k, simple_value=float(v)) for k, v in scalars.items()])

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """images: name -> uint8 [N, H, W, C]; one image tag per picture ('<name>' when N = 1,
        else '<name>/<i>')."""
        from tensorboard.compat.proto import summary_pb2

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
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.util import tensor_util

    out: dict[str, dict[int, float]] = {}
    for name in sorted(os.listdir(logdir)):
        if not name.startswith(EVENT_FILE_PREFIX):
            continue
        for event in event_file_loader.EventFileLoader(os.path.join(logdir, name)).Load():
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
    from tensorboard.backend.event_processing import event_file_loader

    return {
        value.tag
        for name in sorted(os.listdir(logdir))
        if name.startswith(EVENT_FILE_PREFIX)
        for event in event_file_loader.EventFileLoader(os.path.join(logdir, name)).Load()
        for value in event.summary.value
    }
