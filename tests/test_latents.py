"""Latent diffusion's data path: the cache (resumed encoding == uninterrupted, flips, labels,
refusal of a stale cache), posterior sampling from the example's key, training on latents
(1 vs 4 devices, bitwise resume, decoded samples), and the dry run of every latent config."""

import gzip
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import celebahq_ldm, fashion_mnist_latent_dit, ffhq_ldm, imagenet256_dit
from conftest import FASHION_MNIST_DIR, make_tiny_config
from diffmtl import autoencoder
from diffmtl.autoencoder import latent_cache
from diffmtl.data import from_config, pipeline
from diffmtl.data.fashion_mnist import FASHION_MNIST_FILES, read_idx
from diffmtl.errors import UserError
from diffmtl.evaluation.metrics import params_io
from diffmtl.training import dry_run, experiment, loop, steps
from train_steps import assert_same_training, run_steps

SIZES = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, num_groups=4)


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def small_fmnist(tmp_path_factory):
    """The first 80 train and 48 test Fashion-MNIST images as IDX files."""
    out = tmp_path_factory.mktemp("fmnist")
    for split, count in (("train", 80), ("test", 48)):
        for name in FASHION_MNIST_FILES[split]:
            _write_idx(out / name, read_idx(os.path.join(FASHION_MNIST_DIR, name))[:count])
    return str(out)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weights of the tiny autoencoder, as one of our .npz files."""
    config = _config("", "")
    model = autoencoder.make_autoencoder(config)
    params = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 28, 28, 1)))["params"]
    path = str(tmp_path_factory.mktemp("ae") / "tiny_ae.npz")
    params_io.save_params(path, jax.device_get(params))
    return path


def _config(data_dir, weights_path, cache_dir="", **overrides):
    config = make_tiny_config()
    config.data.dir = data_dir
    config.data.name, config.data.pixel_source = "latents", "fashion_mnist"
    config.autoencoder.update(SIZES)
    config.autoencoder.update(checkpoint=weights_path, cache_dir=cache_dir, scale_factor=0.7)
    config.autoencoder.batch_size = 16
    config.sampling.clip_denoised = False
    config.update_from_flattened_dict(overrides)
    return config


def _cache_arrays(root) -> dict[str, np.ndarray]:
    out = {}
    for shard in sorted(os.listdir(root)):
        if shard.startswith("shard_"):
            for name in sorted(os.listdir(os.path.join(root, shard))):
                out[f"{shard}/{name}"] = np.load(os.path.join(root, shard, name))
    return out


def test_a_killed_encoding_resumes_to_the_uninterrupted_cache(
    small_fmnist, weights, tmp_path, monkeypatch
):
    monkeypatch.setattr(latent_cache, "SHARD_SIZE", 32)  # 80 examples: 3 shards
    flags = {"data.random_flip": True, "data.num_classes": 10}
    whole = _config(small_fmnist, weights, str(tmp_path / "whole"), **flags)
    source = from_config.make_source(whole, "train")
    assert source.num_examples == 80 and source.latent_shape == (14, 14, 4)

    killed = _config(small_fmnist, weights, str(tmp_path / "killed"), **flags)
    write, calls = latent_cache._write_shard, []

    def dies_after_one_shard(path, arrays):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(path)
        write(path, arrays)

    monkeypatch.setattr(latent_cache, "_write_shard", dies_after_one_shard)
    with pytest.raises(KeyboardInterrupt):
        from_config.make_source(killed, "train")
    assert not (tmp_path / "killed" / "train" / "meta.json").exists()
    monkeypatch.setattr(latent_cache, "_write_shard", write)
    from_config.make_source(killed, "train")
    a, b = _cache_arrays(tmp_path / "whole" / "train"), _cache_arrays(tmp_path / "killed" / "train")
    assert sorted(a) == sorted(b) and "shard_00002/mean_flip.npy" in a
    chex.assert_trees_all_equal(a, b)
    np.testing.assert_array_equal(a["shard_00000/label.npy"], source.labels[:32])
    # The flipped latents are those of the mirrored images, not mirrored latents.
    assert not np.allclose(a["shard_00000/mean_flip.npy"], a["shard_00000/mean.npy"][:, :, ::-1])

    examples = source.examples(np.array([3, 40, 79]), np.array([False, True, False]))
    np.testing.assert_allclose(examples["x0"][1], 0.7 * a["shard_00001/mean_flip.npy"][8])
    np.testing.assert_allclose(examples["x0_std"][2], 0.7 * a["shard_00002/std.npy"][15])
    np.testing.assert_array_equal(examples["label"], source.labels[[3, 40, 79]])


def test_a_cache_made_with_other_weights_or_data_is_refused(small_fmnist, weights, tmp_path):
    config = _config(small_fmnist, weights, str(tmp_path / "cache"))
    from_config.make_source(config, "test")
    meta = json.loads((tmp_path / "cache" / "test" / "meta.json").read_text())
    meta["autoencoder_sha256"] = "0" * 64
    (tmp_path / "cache" / "test" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"latent cache .* was made with autoencoder_sha256="):
        from_config.make_source(config, "test")
    config.autoencoder.checkpoint = str(tmp_path / "absent.npz")
    with pytest.raises(UserError, match=r"autoencoder weights file .*absent.npz.* is missing"):
        from_config.make_source(config, "test")


def test_posterior_samples_come_from_the_example_key():
    mean, std = jnp.full((3, 2, 2, 1), 5.0), jnp.full((3, 2, 2, 1), 0.5)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    a = steps.sample_posterior(mean, std, keys)
    np.testing.assert_array_equal(a[1:], steps.sample_posterior(mean[1:], std[1:], keys[1:]))
    assert not np.allclose(a[0], a[1])
    big = steps.sample_posterior(
        jnp.zeros((4000, 1)), jnp.full((4000, 1), 2.0), jax.random.split(keys[0], 4000)
    )
    assert abs(float(jnp.std(big)) - 2.0) < 0.1 and abs(float(jnp.mean(big))) < 0.1


def test_latent_training_on_four_devices_equals_one(small_fmnist, weights, tmp_path, devices):
    config = _config(small_fmnist, weights, str(tmp_path / "cache"), **{"data.num_classes": 10})
    four, one = run_steps(config, devices), run_steps(config, devices[:1])
    assert_same_training(four, one)
    exp = experiment.build_experiment(config, devices[:1])
    batch = next(pipeline.GlobalBatchIterator(exp.source, 0, exp.layout, exp.mesh))
    assert set(batch) == {"x0", "x0_std", "label"}
    chex.assert_shape(batch["x0"], (1, 5, 8, 14, 14, 4))


@pytest.mark.slow
def test_latent_run_resumes_bitwise_and_evaluates_decoded_samples(small_fmnist, weights, tmp_path):
    def train(workdir, num_steps):
        config = _config(
            small_fmnist, weights, str(tmp_path / "cache"), **{"data.random_flip": True}
        )
        config.train.num_train_steps = num_steps
        return jax.device_get(loop.train_and_evaluate(config, str(workdir)))

    uninterrupted = train(tmp_path / "a", 4)
    train(tmp_path / "b", 2)
    chex.assert_trees_all_equal(uninterrupted, train(tmp_path / "b", 4))
    record = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert np.isfinite(record["metrics"]["eval/fid"])
    assert (tmp_path / "b" / "samples.png").stat().st_size > 0


def _shrink(config):
    """The tiny settings: a small model, autoencoder and batch; the config's own structure."""
    config.autoencoder.update(SIZES)
    config.model.update(
        base_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(8,),
        num_heads=2,
        num_groups=4,
    )
    config.data.image_size = min(config.data.image_size, 32)
    config.train.update(batch_size=40, num_microbatches=1)
    config.sampling.batch_size = 8
    config.clustering.update(method="uniform", tas_path="")
    return config


@pytest.mark.slow
@pytest.mark.parametrize(
    "module", [ffhq_ldm, celebahq_ldm, imagenet256_dit, fashion_mnist_latent_dit]
)
def test_the_dry_run_of_every_latent_config_compiles(module, devices):
    config = _shrink(module.get_config())
    if config.model.name == "dit":
        config.model.variant = "DiT-Ti/8"
    report = dry_run.dry_run(config, devices)
    assert report.decode is not None and report.decode.flops > 0
    assert any(line.startswith("decode of 8 samples") for line in report.lines())
    assert autoencoder.latent_shape(config)[-1] == 4
