"""Every user error ends as main.py ends it: exit status 2, one line naming the field or file, no
traceback, nothing written; an unreadable image met mid-run stops the run the same way after the
last good checkpoint."""

import gzip
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import FASHION_MNIST_DIR, make_tiny_config
from diffmtl import modes
from diffmtl.data import pipeline as input_pipeline
from diffmtl.errors import exit_on_user_error
from diffmtl.training import checkpointing, loop


def _set(field, value):
    def edit(config, tmp_path):
        section, name = field.split(".")
        config[section][name] = value

    return edit


def _unet_image_size(size):
    def edit(config, tmp_path):
        config.model.name, config.data.image_size = "unet", size

    return edit


def _tas(content):
    def edit(config, tmp_path):
        config.clustering.method = "gradient"
        config.clustering.tas_path = str(tmp_path / "tas.npy")
        if content is not None:
            (tmp_path / "tas.npy").write_bytes(content)

    return edit


def _rgb_folder(config, tmp_path):
    config.data.name, config.data.channels = "image_folder", 3


def _truncated_idx(config, tmp_path):
    data = tmp_path / "fmnist"
    shutil.copytree(FASHION_MNIST_DIR, data)
    path = data / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(raw[:-100])
    config.data.dir = str(data)


CASES = {
    # One config field (test_config_validation.py names every field's errors); the rest are
    # cross-checks against the model, the data and files.
    "batch size": (_set("train.batch_size", 42), "train.batch_size=42 is not divisible by"),
    "image size": (_unet_image_size(32), "but fashion_mnist images are 28x28x1: set --config"),
    "model": (_set("model.name", "vit"), "model.name='vit' is unknown"),
    "feature network": (_rgb_folder, "'fmnist_classifier' reads 28x28x1 images"),
    "missing TAS": (_tas(None), "tas.npy does not exist"),
    "malformed TAS": (_tas(b"not numpy"), "tas.npy is not a readable .npy array"),
    "missing data": (_set("data.dir", "/no/such/dir"), "data.dir /no/such/dir does not exist"),
    "truncated IDX": (_truncated_idx, "train-images-idx3-ubyte.gz is truncated or corrupt"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_user_error_exits_2_with_one_line(case, tmp_path, capsys):
    edit, message = CASES[case]
    config = make_tiny_config()
    edit(config, tmp_path)
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(modes.train_mode, config, str(workdir))
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (workdir / "checkpoints").exists()


@pytest.mark.slow
def test_an_unreadable_image_mid_run_stops_after_the_last_good_checkpoint(
    tmp_path, capsys, monkeypatch
):
    """200 images, batches of 40: the file at stream position 100 (step 2) is broken."""
    config = make_tiny_config()
    config.data.name, config.data.dir = "image_folder", str(tmp_path / "images")
    config.data.image_size, config.data.channels = 8, 3
    config.model.attention_resolutions = (4,)
    config.eval.feature_network = "inception"  # the evaluator is not what this test is about:
    config.eval.inception_path = str(tmp_path / "stand_in.npz")  # replaced below, never read
    (tmp_path / "stand_in.npz").write_bytes(b"")
    monkeypatch.setattr(loop.evaluator_lib, "Evaluator", lambda *args: None)
    config.train.num_train_steps, config.checkpoint_every_steps = 6, 1
    n = 200
    order = input_pipeline.epoch_permutation(config.seed, 0, n)
    position = 100  # batch 2 of 40
    rng = np.random.default_rng(0)
    os.makedirs(config.data.dir)
    for i in range(n):
        path = os.path.join(config.data.dir, f"{i:03d}.png")
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    broken = os.path.join(config.data.dir, f"{order[position]:03d}.png")
    with open(broken, "wb") as f:
        f.write(b"\x89PNG truncated")

    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(modes.train_mode, config, str(tmp_path / "run"))
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"cannot read image {broken}" in lines[0]
    manager = checkpointing.make_manager(str(tmp_path / "run"), 10)
    assert manager.all_steps() == [1, 2]  # every step before the bad batch, saved complete


def _one_error_line(capsys) -> str:
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("kind", ["file", "checkpoints file"])
def test_a_workdir_that_cannot_hold_a_run_is_refused(kind, tmp_path, capsys):
    workdir = tmp_path / "run"
    if kind == "file":
        workdir.write_text("not a directory")
        message = "is a file, not a directory"
    else:
        workdir.mkdir()
        (workdir / "checkpoints").write_text("x")
        message = "holds a file named checkpoints"
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(modes.MODES["train"], make_tiny_config(), str(workdir))
    assert exit_info.value.code == 2 and message in _one_error_line(capsys)


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_names_its_step_and_the_way_out(tmp_path, capsys):
    """Steps 2 and 4 saved; step 4's meta item is deleted (an incomplete copy). Training stops in
    one line naming step 4 and --config.restore_step=2, deleting nothing; with that flag it
    resumes from step 2; a restore_step with no checkpoint is refused."""
    config = make_tiny_config()
    workdir = str(tmp_path / "run")
    loop.train_and_evaluate(config, workdir)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "4", "meta"))
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(modes.MODES["evaluate"], config, workdir)
    line = _one_error_line(capsys)
    assert exit_info.value.code == 2
    assert "checkpoint step 4" in line and "--config.restore_step=2" in line, line
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    config.restore_step = 2
    message = modes.evaluate_checkpoint(config, workdir)
    assert message.startswith("step 2:")
    config.restore_step = 3
    with pytest.raises(SystemExit):
        exit_on_user_error(modes.MODES["evaluate"], config, workdir)
    assert "restore_step=3: " in _one_error_line(capsys)
