"""A host without TensorFlow (most GPU and TPU images): main.py trains, evaluates and samples
the tiny config with `tensorflow`, `tensorflow_datasets` and `clu` unimportable
(tests/without_tensorflow/sitecustomize.py), and writes checkpoints, metrics.json and event
files that TensorBoard's own reader parses; a TFDS config ends in one line naming the extra."""

import json
import os
import subprocess

import pytest

from main_runs import ROOT, launch

BLOCKER = os.path.join(ROOT, "tests", "without_tensorflow")


def without_tensorflow(overrides, workdir, *flags):
    """main.py's (stdout, stderr) in a process where TensorFlow, TFDS and clu do not import."""
    path = os.pathsep.join(p for p in (BLOCKER, os.environ.get("PYTHONPATH")) if p)
    process = launch(overrides, workdir, *flags, stdout=subprocess.PIPE, PYTHONPATH=path)
    out, err = process.communicate(timeout=600)
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
def test_train_evaluate_sample_without_tensorflow(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    workdir = tmp_path / "run"
    code, out, err = without_tensorflow({}, workdir)
    assert code == 0, err[-3000:]
    assert "FID_FMNIST" in out
    assert "tensorflow" not in err.lower()
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
    with open(workdir / "metrics.json") as f:
        assert json.load(f)["step"] == 4
    accumulator = event_accumulator.EventAccumulator(str(workdir))
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/task_losses/cluster_4", "eval/fid", "val/loss"} <= scalars
    assert [e.step for e in accumulator.Scalars("train/loss")] == [2, 4]
    assert accumulator.Tags()["images"] == ["samples"]

    code, out, err = without_tensorflow({}, workdir, "--mode=evaluate")
    assert code == 0 and out.startswith("step 4: FID_FMNIST"), err[-3000:]
    code, out, err = without_tensorflow({"eval.num_samples": 4}, workdir, "--mode=sample")
    assert code == 0 and out.startswith("4 samples of step 4"), err[-3000:]


@pytest.mark.slow
def test_a_tfds_config_names_the_extra_without_tensorflow(tmp_path):
    code, out, err = without_tensorflow(
        {"data.name": "tfds", "data.tfds_name": "ffhq256"}, tmp_path / "run"
    )
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "error: data.name='tfds' needs TensorFlow Datasets, which is not installed: pip install "
        "'diffmtl[tfds]' (or prepare an image folder: data.name='image_folder')"
    )
    assert not (tmp_path / "run" / "checkpoints").exists()
