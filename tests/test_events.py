"""TensorBoard event files without TensorFlow: what EventWriter writes, TensorBoard's own reader
reads back (scalars to float32, images as the PNG of the pixels); read_scalars reads clu's
files too; Progress reports the rate of the steps since its last report."""

import io

import numpy as np
import pytest
from PIL import Image

from diffmtl.training import events


def test_event_writer_files_parse_in_tensorboards_reader(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    writer = events.EventWriter(str(tmp_path))
    writer.write_scalars(3, {"train/loss": 0.25, "eval/fid": 1e3 / 3})
    writer.write_scalars(7, {"train/loss": 0.125})
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 256, (1, 6, 5, 1), dtype=np.uint8)
    writer.write_images(7, {"samples": grid, "pair": np.repeat(grid, 2, axis=0)})
    writer.close()

    accumulator = event_accumulator.EventAccumulator(str(tmp_path))
    accumulator.Reload()
    tags = accumulator.Tags()
    assert set(tags["scalars"]) == {"train/loss", "eval/fid"}
    assert set(tags["images"]) == {"samples", "pair/0", "pair/1"}
    loss = [(e.step, e.value) for e in accumulator.Scalars("train/loss")]
    assert loss == [(3, 0.25), (7, 0.125)]
    assert accumulator.Scalars("eval/fid")[0].value == pytest.approx(1e3 / 3, rel=1e-7)
    image = accumulator.Images("samples")[0]
    assert (image.step, image.width, image.height) == (7, 5, 6)
    decoded = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
    np.testing.assert_array_equal(decoded, grid[0, ..., 0])

    assert events.read_scalars(str(tmp_path), "train/") == {"train/loss": {3: 0.25, 7: 0.125}}
    assert events.read_tags(str(tmp_path)) == {
        "train/loss",
        "eval/fid",
        "samples",
        "pair/0",
        "pair/1",
    }


def test_just_logging_writes_no_file(tmp_path):
    writer = events.EventWriter(str(tmp_path / "w"), just_logging=True)
    writer.write_scalars(1, {"a": 1.0})
    writer.flush()
    assert not (tmp_path / "w").exists()


def test_read_scalars_reads_clus_tensor_summaries(tmp_path):
    if not events.tensorflow_available():
        pytest.skip("clu's writer needs TensorFlow")
    writer = events.create_writer(str(tmp_path))
    assert not isinstance(writer, events.EventWriter)  # clu's, where TensorFlow imports
    writer.write_scalars(5, {"train/loss": 0.5, "steps_per_sec": 2.0})
    writer.write_images(5, {"samples": np.zeros((1, 4, 4, 1), np.uint8)})
    writer.flush()
    assert events.read_scalars(str(tmp_path)) == {"train/loss": {5: 0.5}, "steps_per_sec": {5: 2.0}}


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _Scalars:
    def __init__(self):
        self.written = []

    def write_scalars(self, step, scalars):
        self.written.append((step, scalars))


def test_progress_reports_the_rate_since_its_last_report_without_the_compile():
    clock, writer = _Clock(), _Scalars()
    progress = events.Progress(num_steps=100, writer=writer, every_secs=10.0, clock=clock)
    assert progress(1) is None  # After the first step (the compile): the clock starts.
    clock.now += 5.0
    assert progress(11) is None  # Too soon.
    clock.now += 5.0
    assert progress(21) == pytest.approx(2.0)  # 20 steps in 10 s
    clock.now += 1.0
    assert progress(100) == pytest.approx(79.0)  # The last step always reports.
    assert writer.written == [
        (21, {"steps_per_sec": pytest.approx(2.0)}),
        (100, {"steps_per_sec": pytest.approx(79.0)}),
    ]


def test_event_writer_and_reader_never_import_tensorflow(tmp_path):
    """Where TensorFlow is installed (here) tensorboard's own writer and reader import it; ours
    must not: a subprocess writes and reads, then reports whether TensorFlow was imported."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom diffmtl.training import events\n"
        f"w = events.EventWriter({str(tmp_path)!r}); w.write_scalars(1, {{'a': 2.0}}); w.close()\n"
        f"assert events.read_scalars({str(tmp_path)!r}) == {{'a': {{1: 2.0}}}}\n"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_truncated_last_record_ends_the_file_and_a_corrupt_one_is_named(tmp_path):
    writer = events.EventWriter(str(tmp_path))
    for step in (1, 2):
        writer.write_scalars(step, {"a": float(step)})
    writer.close()
    (path,) = tmp_path.iterdir()
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # a writer killed mid-record
    assert events.read_scalars(str(tmp_path)) == {"a": {1: 1.0}}
    corrupt = bytearray(data)
    corrupt[-6] ^= 0xFF  # a flipped bit in the last record's bytes
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match="corrupt record"):
        events.read_scalars(str(tmp_path))
