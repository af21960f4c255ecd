"""Reference statistics: the CLI's file equals what a run makes and caches in its workdir."""

import os

import numpy as np

from conftest import make_tiny_config
from diffmtl import sharding
from diffmtl.evaluation import evaluator as evaluate
from diffmtl.evaluation.metrics import features, frechet, reference


def test_reference_cli_and_run_cache_agree(tmp_path, devices):
    config = make_tiny_config()
    out = str(tmp_path / "ref.npz")
    assert "features of 64 fashion_mnist images" in reference.write_reference(config, out)
    written = frechet.load_reference(out)
    assert written["features"].shape == (64, 128)
    np.testing.assert_allclose(written["mu"], written["features"].mean(0), rtol=1e-5)

    net = features.make_feature_network(config.eval)
    extract = features.make_extractor(net, sharding.make_mesh(devices=devices), 32)
    workdir = str(tmp_path / "run")
    made = evaluate.load_or_make_reference(config, extract, workdir)
    cached = evaluate.reference_path(config, workdir)
    assert os.path.isfile(cached)
    reloaded = evaluate.load_or_make_reference(config, extract, workdir)
    for name in ("mu", "sigma", "features"):
        np.testing.assert_allclose(made[name], written[name], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(reloaded[name], np.asarray(made[name], reloaded[name].dtype))
