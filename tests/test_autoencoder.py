"""The KL autoencoder: SD's sizes, the KL in closed form, the diffusers weight loader (round
trips, both attention layouts, one-line errors), parity with diffusers when its outputs are
given, the codec's padding and scaling, and the committed Fashion-MNIST autoencoder."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import make_tiny_config
from diffmtl import autoencoder, sharding
from diffmtl.autoencoder import codec as codec_lib
from diffmtl.autoencoder import kl, pretrained, sd_weights
from diffmtl.data.fashion_mnist import FashionMNIST
from diffmtl.data.images import to_model_range
from diffmtl.errors import UserError
from tools import fixture_weights

SMALL = kl.AutoencoderKL(1, 8, (1, 2), 1, 4, 4)  # f2, 2 levels, GroupNorm(4)


def _small_params(seed=0):
    return SMALL.init(jax.random.PRNGKey(seed), jnp.zeros((1, 8, 8, 1)))["params"]


def test_sd_vae_has_the_published_size_and_shapes():
    """83,653,863 parameters (diffusers' AutoencoderKL of sd-vae-ft-ema); 256 px -> 32x32x4."""
    model = kl.AutoencoderKL()
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(x.shape)))
    assert sum(p.size for p in jax.tree.leaves(params)) == 83_653_863
    mean, std = jax.eval_shape(lambda p, x: model.apply(p, x, method=model.encode), params, x)
    chex.assert_shape([mean, std], (1, 32, 32, 4))
    z = jax.ShapeDtypeStruct((1, 32, 32, 4), jnp.float32)
    out = jax.eval_shape(lambda p, z: model.apply(p, z, method=model.decode), params, z)
    chex.assert_shape(out, (1, 256, 256, 3))
    assert model.downsampling == 8


def test_kl_matches_numerical_integration_and_vanishes_at_the_prior():
    mean, std = 0.7, 0.4
    grid = np.linspace(-8, 8, 200_001)
    q = np.exp(-0.5 * ((grid - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))
    p = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    numeric = np.trapezoid(q * (np.log(q + 1e-300) - np.log(p)), grid)
    got = kl.kl_to_standard_normal(jnp.full((1, 1), mean), jnp.full((1, 1), std))
    np.testing.assert_allclose(got, [numeric], rtol=1e-6)
    sums = kl.kl_to_standard_normal(jnp.full((2, 3, 3, 4), mean), jnp.full((2, 3, 3, 4), std))
    np.testing.assert_allclose(sums, [36 * numeric] * 2, rtol=1e-5)
    np.testing.assert_allclose(kl.kl_to_standard_normal(jnp.zeros((1, 5)), jnp.ones((1, 5))), [0])


def test_random_weights_round_trip_through_the_diffusers_layout(tmp_path):
    params = _small_params()
    path = str(tmp_path / "diffusion_pytorch_model.safetensors")
    sd_weights.save_diffusers(path, params)
    tensors = load_file(path)
    # diffusers' names and layouts: conv OIHW, linear [out, in], GroupNorm weight.
    assert tensors["encoder.down_blocks.0.resnets.0.conv1.weight"].shape == (8, 8, 3, 3)
    assert tensors["decoder.up_blocks.1.resnets.1.norm2.weight"].shape == (8,)
    assert "encoder.mid_block.attentions.0.to_out.0.weight" in tensors
    assert "decoder.up_blocks.0.upsamplers.0.conv.bias" in tensors
    loaded = sd_weights.load_diffusers(path, jax.eval_shape(lambda: params))
    chex.assert_trees_all_equal(loaded, jax.device_get(params))


def test_older_files_with_1x1_conv_attention_load_the_same(tmp_path):
    params = _small_params()
    new = str(tmp_path / "new.safetensors")
    sd_weights.save_diffusers(new, params)
    old_names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    old = {}
    for key, value in load_file(new).items():
        for current, previous in old_names.items():
            if f".attentions.0.{current}." in key:
                key = key.replace(f".{current}.", f".{previous}.")
                value = value.reshape(value.shape + (1, 1)) if value.ndim == 2 else value
        old[key] = value
    save_file(old, str(tmp_path / "old.safetensors"))
    template = jax.eval_shape(lambda: params)
    chex.assert_trees_all_equal(
        sd_weights.load_diffusers(str(tmp_path / "old.safetensors"), template),
        sd_weights.load_diffusers(new, template),
    )


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing_file", r"weights .*absent.safetensors not found: set autoencoder.checkpoint"),
        ("not_safetensors", r"weights .*bad.safetensors is not a safetensors file"),
        ("drop", r"key 'decoder.conv_out.bias' is missing"),
        ("extra", r"unexpected key 'encoder.extra.weight' \(1 in all\)"),
        ("reshape", r"key 'encoder.conv_in.weight' has shape \(8, 1, 1, 1\), the config's"),
    ],
)
def test_bad_weight_files_end_in_one_line_naming_file_and_key(tmp_path, damage, message):
    params = _small_params()
    good = str(tmp_path / "good.safetensors")
    sd_weights.save_diffusers(good, params)
    tensors = load_file(good)
    path = str(tmp_path / "bad.safetensors")
    if damage == "missing_file":
        path = str(tmp_path / "absent.safetensors")
    elif damage == "not_safetensors":
        (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    else:
        if damage == "drop":
            del tensors["decoder.conv_out.bias"]
        elif damage == "extra":
            tensors["encoder.extra.weight"] = np.zeros(3, np.float32)
        else:
            tensors["encoder.conv_in.weight"] = np.zeros((8, 1, 1, 1), np.float32)
        save_file(tensors, path)
    with pytest.raises(UserError, match=message) as info:
        sd_weights.load_diffusers(path, jax.eval_shape(lambda: params))
    assert "\n" not in str(info.value)


PARITY_DIR = os.environ.get("DIFFMTL_VAE_PARITY", "")
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "vae_small_parity.npz")


def check_parity_with_diffusers(npz: str, weights: str, tmp_path) -> dict[str, float]:
    """Our encode / decode on diffusers' random weights and inputs (tools/vae_parity.py): the
    weights from `weights` (a safetensors file) or, if empty, drawn again from the npz's
    `shapes` (a committed fixture). Returns max |ours - diffusers| per output."""
    with np.load(npz) as data:
        ref = {k: data[k] for k in data.files}
    if not weights:
        drawn = fixture_weights.draw(fixture_weights.decode(ref["shapes"]), 0.05, True)
        weights = str(tmp_path / "diffusion_pytorch_model.safetensors")
        save_file(drawn, weights)
    sizes = json.loads(str(ref["sizes"]))
    blocks = sizes["blocks"]
    model = kl.AutoencoderKL(
        sizes["image_channels"],
        blocks[0],
        tuple(b // blocks[0] for b in blocks),
        sizes["layers"],
        4,
        32,
    )
    x = jnp.asarray(ref["x"])
    template = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))["params"]
    params = sd_weights.load_diffusers(weights, template)
    mean, std = jax.jit(lambda p: model.apply({"params": p}, x, method=model.encode))(params)
    decoded = jax.jit(lambda p: model.apply({"params": p}, mean, method=model.decode))(params)
    diffs = {}
    for name, ours in (("mean", mean), ("std", std), ("decoded", decoded)):
        diffs[name] = float(np.max(np.abs(np.asarray(ours) - ref[name])))
        np.testing.assert_allclose(ours, ref[name], atol=1e-4)
    return diffs


def test_encode_and_decode_match_diffusers_on_the_committed_fixture(tmp_path):
    """diffusers' AutoencoderKL (random weights, a 3-level f4 model on 28x28x1) committed as
    tests/fixtures/vae_small_parity.npz by `tools/vae_parity.py --size=small --fixture`."""
    assert max(check_parity_with_diffusers(FIXTURE, "", tmp_path).values()) <= 1e-4


@pytest.mark.skipif(not PARITY_DIR, reason="set DIFFMTL_VAE_PARITY (tools/vae_parity.py)")
def test_parity_with_diffusers_autoencoder_kl(tmp_path):
    """Any size's parity directory made by tools/vae_parity.py (with its weights)."""
    npz = os.path.join(PARITY_DIR, "parity.npz")
    weights = os.path.join(PARITY_DIR, "diffusion_pytorch_model.safetensors")
    print("max |ours - diffusers|:", check_parity_with_diffusers(npz, weights, tmp_path))


def test_codec_pads_to_the_encoder_size_crops_back_and_scales(devices):
    config = make_tiny_config()
    config.autoencoder.update(
        base_channels=8, channel_mults=(1, 2), num_res_blocks=1, num_groups=4, input_size=32
    )
    config.autoencoder.scale_factor = 0.5
    model = autoencoder.make_autoencoder(config)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))["params"]
    codec = codec_lib.make_codec(config, sharding.make_mesh(devices=devices), params)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
    mean, std = codec.encode(x)
    chex.assert_shape([mean, std], (4, 16, 16, 4))
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1.0)
    expected = model.apply({"params": params}, padded, method=model.encode)
    np.testing.assert_allclose(mean, expected[0], atol=1e-5)
    z = jax.device_put(mean * 0.5, sharding.batch_sharding(codec.mesh, 0))
    decoded = np.asarray(codec.decode(z))
    full = model.apply({"params": params}, mean, method=model.decode)
    np.testing.assert_allclose(decoded, np.asarray(full)[:, 2:30, 2:30], atol=1e-5)
    assert autoencoder.latent_shape(config) == (16, 16, 4)


def test_the_committed_fashion_mnist_autoencoder_reconstructs():
    """Checksum, and decode(encode(x)) close to x: a mean |error| of at most 0.1 on [-1, 1]
    (tools/train_fmnist_autoencoder.py measured the test split's) and encode(decode(mean))
    close to mean."""
    config = make_tiny_config()
    pretrained.use_fmnist_autoencoder(config)
    params = autoencoder.load_params(config)
    model = autoencoder.make_autoencoder(config)
    x = to_model_range(FashionMNIST(config.data.dir, "test").images(np.arange(32)))
    padded = codec_lib.pad_to(jnp.asarray(x), 32)
    mean, _ = model.apply({"params": params}, padded, method=model.encode)
    decoded = model.apply({"params": params}, mean, method=model.decode)
    error = np.abs(np.asarray(codec_lib.crop_to(decoded, 28)) - x)
    assert error.mean() < 0.1, error.mean()
    again, _ = model.apply({"params": params}, decoded, method=model.encode)
    assert np.abs(np.asarray(again) - np.asarray(mean)).mean() < 0.2 * np.abs(mean).mean()
    # The scale factor makes the latents about unit-variance, as SD's 0.18215 does.
    assert 0.5 < float(np.std(np.asarray(mean) * config.autoencoder.scale_factor)) < 2.0


def test_a_pickled_weights_file_is_refused_in_one_line(tmp_path):
    """allow_pickle stays False: an object array in our .npz, Inception's or DiT's is one line."""
    from diffmtl.evaluation.metrics import inception

    path = str(tmp_path / "pickled.npz")
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    for load in (pretrained.load_npz, inception.load_params):
        with pytest.raises(UserError, match="Object arrays cannot be loaded") as info:
            load(path)
        assert "\n" not in str(info.value) and path in str(info.value)
