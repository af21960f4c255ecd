"""A gs:// workdir: every file diffmtl writes or reads there goes through etils.epath.

The bucket is faked: epath's gs:// backend is redirected to a temporary directory (orbax
checkpoints use their own gs:// drivers and are not covered here)."""

import contextlib
import json
from unittest import mock

import numpy as np
import pytest
from etils import epath
from etils.epath import gpath, testing

from conftest import make_tiny_config
from diffmtl import config_validation
from diffmtl.evaluation import evaluator as evaluate
from diffmtl.evaluation import validation_loss as validation
from diffmtl.evaluation.metrics import frechet
from diffmtl.training import checkpointing, run_info

_FNS = ("open", "exists", "isdir", "makedirs", "mkdir", "listdir", "glob", "stat", "remove")


@pytest.fixture
def bucket(tmp_path):
    """Yields ('gs://bucket/run', the local directory that stands for it)."""

    def redirect(fn, path, *args, **kwargs):
        return fn(str(path).replace("gs://", f"{tmp_path}/"), *args, **kwargs)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(gpath, "_is_tf_installed", return_value=False))
        stack.enter_context(testing.mock_epath(**{name: redirect for name in _FNS}))
        yield "gs://bucket/run", tmp_path / "bucket" / "run"


def test_run_files_samples_references_and_plots_go_to_the_bucket(bucket):
    workdir, local = bucket
    config = make_tiny_config()
    boundaries = np.array([[0, 499], [500, 999]])
    run_info.write_run_info(workdir, config, boundaries)
    clusters = json.loads((local / "clusters.json").read_text())
    assert clusters["intervals"] == boundaries.tolist()
    assert (local / "config.json").is_file() and (local / "run_info.json").is_file()

    samples = np.random.default_rng(0).integers(0, 256, (4, 6, 6, 1), dtype=np.uint8)
    path = evaluate.write_sample_files(f"{workdir}/samples", samples, grid_size=4)
    assert path == f"{workdir}/samples/samples_4x6x6x1.npz"
    with np.load(local / "samples" / "samples_4x6x6x1.npz") as data:
        np.testing.assert_array_equal(data["arr_0"], samples)
    assert (local / "samples" / "samples_4x6x6x1.png").is_file()

    features = np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32)
    frechet.save_reference(f"{workdir}/ref.npz", features)
    np.testing.assert_array_equal(
        frechet.load_reference(f"{workdir}/ref.npz")["features"], features
    )
    config.eval.reference_path = f"{workdir}/ref.npz"
    config_validation.validate(config, 1)  # is_file through epath

    validation.plot_validation_loss(f"{workdir}/v.png", np.arange(3), np.ones(3), boundaries)
    assert (local / "v.png").read_bytes()[:4] == b"\x89PNG"
    (local / "metrics.json").write_text(json.dumps({"headline": "FID 1.0"}))
    assert evaluate.read_headline(workdir) == "FID 1.0"


def test_checkpoint_directory_keeps_the_bucket_uri_and_absolutises_local_paths(tmp_path):
    with mock.patch.object(checkpointing.ocp, "CheckpointManager") as manager:
        checkpointing.make_manager("gs://bucket/run", 2)
        assert str(manager.call_args.args[0]) == "gs://bucket/run/checkpoints"
        checkpointing.make_manager("relative/run", 2)
        assert str(manager.call_args.args[0]) == str(
            epath.Path("relative/run").absolute() / "checkpoints"
        )
