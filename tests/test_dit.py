"""DiT: the paper's parameter counts, adaLN-Zero's zero output, the position embedding, class
conditioning; label dropout; classifier-free guidance; the DiT step on 1 and 4 devices and the
ImageNet config's step on latent-shaped arrays."""

import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import imagenet256_dit
from conftest import make_tiny_config
from diffmtl import models
from diffmtl.diffusion import guidance
from diffmtl.errors import UserError
from diffmtl.models import dit, dit_weights
from diffmtl.training import dry_run, experiment, steps
from tools import fixture_weights
from train_steps import assert_same_training, run_steps

# What DiT's PyTorch code reports for each variant at 32x32x4, 1000 classes, learned variance
# (sum of numel over model.parameters(), which includes the frozen position embedding).
# XL/2's 675,129,632 is the published figure; the others round to the paper's 33M, 130M, 458M.
PAPER_COUNTS = {
    "DiT-S/2": 32_963_360,
    "DiT-B/2": 130_512_416,
    "DiT-L/2": 458_102_816,
    "DiT-XL/2": 675_129_632,
}


def _dit(variant="DiT-Ti/4", num_classes=10, channels=1):
    depth, hidden, heads, patch = dit.parse_variant(variant)
    return dit.DiT(channels, patch_size=patch, hidden_size=hidden, depth=2, num_heads=heads,
                   num_classes=num_classes)  # fmt: skip


def _init(model, x, t, y):
    return jax.jit(lambda key: model.init(key, x, t, y, train=False))(jax.random.PRNGKey(0))


@pytest.mark.parametrize("variant", sorted(PAPER_COUNTS))
def test_parameter_counts_equal_the_papers(variant):
    config = imagenet256_dit.get_config()
    config.model.variant = variant
    model = models.make_model(config, (32, 32, 4))
    x, t, y = jnp.zeros((1, 32, 32, 4)), jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, t, y, train=False))
    trainable = sum(np.prod(s.shape) for s in jax.tree.leaves(shapes))
    _, hidden, _, patch = dit.parse_variant(variant)
    position_embedding = (32 // patch) ** 2 * hidden  # a constant here, a frozen Parameter there
    assert trainable + position_embedding == PAPER_COUNTS[variant]


def test_untrained_dit_predicts_zero_and_a_trained_one_uses_x_t_and_the_label():
    model = _dit()
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 28, 28, 1))
    t, y = jnp.array([0, 10, 500, 999]), jnp.array([0, 3, 9, 10])
    params = _init(model, x, t, y)["params"]
    apply = jax.jit(lambda p, x, t, y: models.denoise(model, p, x, t, y))
    np.testing.assert_array_equal(apply(params, x, t, y), 0.0)  # adaLN-Zero, zero output layer
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda p: p + 0.02 * rng.normal(size=p.shape), params)
    out = apply(params, x, t, y)
    chex.assert_shape(out, x.shape)
    for other in (
        apply(params, x, t + 1, y),
        apply(params, 2 * x, t, y),
        apply(params, x, t, (y + 1) % 11),
    ):
        assert np.all(np.abs(np.asarray(other - out)).reshape(4, -1).max(axis=1) > 1e-6)


def test_each_output_patch_sees_the_whole_image():
    """Attention mixes the tokens: changing one 4x4 patch changes every patch's output."""
    model = _dit(num_classes=0)
    x = jax.random.normal(jax.random.PRNGKey(1), (1, 28, 28, 1))
    t = jnp.array([100])
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda p: p + 0.05 * rng.normal(size=p.shape), _init(model, x, t, None))
    apply = jax.jit(lambda x: models.denoise(model, params["params"], x, t))
    diff = np.abs(np.asarray(apply(x.at[0, :4, :4].add(1.0)) - apply(x)))[0, ..., 0]
    per_patch = diff.reshape(7, 4, 7, 4).max(axis=(1, 3))
    assert np.all(per_patch > 0)


def test_patch_and_qkv_matmuls_equal_the_convolution_and_fused_dense_they_replace():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
    patch = dit.PatchEmbed(4, 5)
    params = patch.init(jax.random.PRNGKey(1), x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias
    conv = nn.Conv(5, (4, 4), strides=(4, 4), padding="VALID")
    expected = conv.apply(params, x).reshape(2, 4, 5)
    np.testing.assert_allclose(patch.apply(params, x), expected, rtol=1e-5, atol=1e-5)

    h = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 12))
    qkv = dit.QKV(num_heads=3)
    params = jax.tree.map(lambda p: p + 0.1, qkv.init(jax.random.PRNGKey(3), h))
    fused = nn.Dense(36).apply(params, h).reshape(2, 6, 3, 3, 4)
    for i, projection in enumerate(qkv.apply(params, h)):
        chex.assert_shape(projection, (2, 6, 3, 4))
        np.testing.assert_allclose(projection, fused[:, :, i], rtol=1e-5, atol=1e-5)


def test_position_embedding_is_the_2d_sin_cos_table():
    dim, grid = 16, 3
    table = dit.sincos_position_embedding(dim, grid)
    chex.assert_shape(table, (grid * grid, dim))
    omega = 1.0 / 10000 ** (np.arange(4) / 4.0)
    row, col = 2, 1  # token row * grid + col
    expected = np.concatenate(
        [np.sin(col * omega), np.cos(col * omega), np.sin(row * omega), np.cos(row * omega)]
    )
    np.testing.assert_allclose(table[row * grid + col], expected, rtol=1e-6)


def test_conditioning_is_required_exactly_when_the_model_has_classes():
    x, t, y = jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32)
    with pytest.raises(ValueError, match="class-conditional"):
        jax.eval_shape(lambda: _dit().init(jax.random.PRNGKey(0), x, t, None, train=False))
    with pytest.raises(ValueError, match="unconditional"):
        jax.eval_shape(
            lambda: _dit(num_classes=0).init(jax.random.PRNGKey(0), x, t, y, train=False)
        )


def test_label_dropout_rate_and_per_example_determinism():
    n, rate, null = 20_000, 0.1, 10
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    labels = jnp.arange(n) % 10
    dropped = np.asarray(steps.drop_labels(labels, keys, rate, null))
    is_null = dropped == null
    sd = np.sqrt(n * rate * (1 - rate))
    assert abs(is_null.sum() - n * rate) < 5 * sd  # binomial bounds
    np.testing.assert_array_equal(dropped[~is_null], np.asarray(labels)[~is_null])
    subset = np.asarray(steps.drop_labels(labels[::7], keys[::7], rate, null))
    np.testing.assert_array_equal(subset, dropped[::7])  # each example decides alone
    np.testing.assert_array_equal(steps.drop_labels(labels, keys, 0.0, null), labels)


def test_guidance_closed_forms():
    rng = np.random.default_rng(0)
    cond, uncond = (jnp.asarray(rng.normal(size=(2, 4, 4, 8)), jnp.float32) for _ in range(2))
    np.testing.assert_allclose(guidance.combine(cond, uncond, 1.0, 4), cond, atol=1e-6)
    uncond_eps = jnp.concatenate([uncond[..., :4], cond[..., 4:]], -1)
    np.testing.assert_allclose(guidance.combine(cond, uncond, 0.0, 4), uncond_eps, atol=1e-6)
    a, b = guidance.combine(cond, uncond, 1.5, 4), guidance.combine(cond, uncond, 3.0, 4)
    np.testing.assert_allclose(b - cond, 4 * (a - cond), rtol=1e-5, atol=1e-5)  # linear in s
    three = guidance.combine(cond, uncond, 1.5, 3)  # DiT's quirk: channel 3 and v unguided
    np.testing.assert_allclose(three[..., :3], a[..., :3])
    np.testing.assert_allclose(three[..., 3:], cond[..., 3:])


def test_guided_model_fn_is_the_conditional_model_at_scale_one_and_combines_otherwise():
    model = _dit(channels=1)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 28, 28, 1))
    t, y = jnp.array([10, 700]), jnp.array([2, 5])
    params = jax.tree.map(lambda p: p + 0.02, _init(model, x, t, y)["params"])
    cond = models.denoise(model, params, x, t, y)
    uncond = models.denoise(model, params, x, t, jnp.full_like(y, 10))
    one = guidance.guided_model_fn(model, 1.0, 0, 10)(params, x, t, y)
    np.testing.assert_allclose(one, cond, atol=1e-6)
    guided = guidance.guided_model_fn(model, 2.5, 0, 10)(params, x, t, y)
    np.testing.assert_allclose(guided, uncond + 2.5 * (cond - uncond), atol=1e-5)


def _dit_config(num_classes=10):
    config = make_tiny_config()
    config.model.name, config.model.variant, config.model.dropout = "dit", "DiT-Ti/4", 0.0
    config.data.num_classes, config.model.class_dropout = num_classes, 0.5
    config.train.batch_size = 20  # k = 5 clusters of 4: N divisible by 4 devices
    return config


@pytest.mark.slow
def test_dit_step_with_labels_on_a_data_fsdp_mesh_equals_one_device(devices):
    """Four devices as 2 (data) x 2 (fsdp): the DiT's parameters, EMA and Adam moments are
    sharded, the labelled batch split, and training equals one device's."""
    config = _dit_config()
    one = run_steps(config, devices[:1])
    config.mesh.data, config.mesh.fsdp = 2, 2
    assert_same_training(run_steps(config, devices), one)


@pytest.mark.slow
def test_imagenet_config_trains_three_steps_on_latent_shaped_arrays(devices):
    """configs/imagenet256_dit.py (DiT-S/2 for time) on random arrays of its latent batch
    (posterior mean and std, labels; tests/test_latents.py has the real cache). With
    adaLN-Zero, step 1 moves only the output layer (everything before it gets no gradient),
    step 2 the modulations too, step 3 every block weight."""
    config = imagenet256_dit.get_config()
    config.model.variant = "DiT-S/2"
    config.train.batch_size = 20
    exp = experiment.build_experiment(config, devices, with_data=False)
    state = experiment.initial_state(config, exp)
    batch = dry_run.random_inputs(config, exp)
    assert set(batch) == {"x0", "x0_std", "label"}
    chex.assert_shape(batch["x0"], (1, 5, 4, 32, 32, 4))
    before = jax.device_get(state.params)
    for _ in range(3):
        state, metrics = exp.train_step[False](state, batch)
    chex.assert_tree_all_finite(metrics)
    chex.assert_shape(metrics["task_losses"], (5,))
    after = jax.device_get(state.params)
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), after, before)
    assert all(jax.tree.leaves(changed["block_0"]))


def test_official_weights_round_trip_into_the_initial_state_and_bad_files_are_named(
    tmp_path, devices
):
    """A random-weights file in the official layout (written by dit_weights.to_official) loads
    back exactly and becomes the initial params and EMA; a missing key, a wrong shape, a missing
    or unreadable file each stop in one line naming the file and the key."""
    config = _dit_config()
    config.model.variant = "DiT-Ti/4"
    exp = experiment.build_experiment(config, devices[:1])
    rng = np.random.default_rng(0)
    template = experiment.initial_state(config, exp).params
    params = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), template)
    official = dit_weights.to_official(params, "DiT-Ti/4", 28)
    assert official["blocks.11.attn.qkv.weight"].shape == (3 * 192, 192)
    assert official["x_embedder.proj.weight"].shape == (192, 1, 4, 4)
    path = tmp_path / "dit.npz"
    np.savez(path, **official)
    config.model.init_checkpoint = str(path)
    state = experiment.initial_state(config, exp)
    chex.assert_trees_all_equal(jax.device_get(state.params), params)
    chex.assert_trees_all_equal(jax.device_get(state.ema_params), params)

    def refused(arrays, match, name="bad.npz"):
        bad = tmp_path / name
        np.savez(bad, **arrays)
        with pytest.raises(UserError, match=match):
            dit_weights.load_official(str(bad), template, "DiT-Ti/4")

    without = {k: v for k, v in official.items() if k != "blocks.3.mlp.fc1.bias"}
    refused(without, r"bad.npz does not hold DiT-Ti/4 weights: missing key 'blocks.3.mlp.fc1.bias'")
    wider = {**official, "y_embedder.embedding_table.weight": np.zeros((1001, 192), np.float32)}
    refused(wider, r"y_embedder.embedding_table.weight has shape \(1001, 192\).* needs \(11, 192\)")
    with pytest.raises(UserError, match="nowhere.npz does not exist"):
        dit_weights.load_official(str(tmp_path / "nowhere.npz"), template, "DiT-Ti/4")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(UserError, match="text.npz is not a readable .npz"):
        dit_weights.load_official(str(tmp_path / "text.npz"), template, "DiT-Ti/4")


PARITY_FILE = os.environ.get("DIFFMTL_DIT_PARITY", "")
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "dit_s4_parity.npz")


def check_parity_with_official(path: str, tmp_path) -> float:
    """Our forward pass on the official model's random weights and inputs (tools/dit_parity.py;
    weights stored as 'param/<name>' or, in a fixture, drawn again from its `shapes`)."""
    with np.load(path) as data:
        arrays = {k.removeprefix("param/"): data[k] for k in data.files if k.startswith("param/")}
        if not arrays:
            arrays = fixture_weights.draw(fixture_weights.decode(data["shapes"]))
        x, t, y, expected = (data[k] for k in ("x", "t", "y", "out"))
        variant = str(data["variant"])
    np.savez(tmp_path / "weights.npz", **arrays)
    config = imagenet256_dit.get_config()
    config.model.variant = variant
    model = models.make_model(config, (32, 32, 4))
    template = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.asarray(x), t, y, train=False)
    )["params"]
    params = dit_weights.load_official(str(tmp_path / "weights.npz"), template, variant)
    out = jax.jit(
        lambda p: models.denoise(model, p, jnp.asarray(x), jnp.asarray(t), jnp.asarray(y))
    )(params)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    return float(np.max(np.abs(np.asarray(out) - expected)))


def test_forward_matches_the_official_pytorch_dit_on_the_committed_fixture(tmp_path):
    """The official DiT-S/4's outputs (facebookresearch/DiT models.py, random weights, one of
    the inputs with the null label) committed as tests/fixtures/dit_s4_parity.npz by
    `tools/dit_parity.py --variant=DiT-S/4 --fixture`: an oracle that needs no torch."""
    assert check_parity_with_official(FIXTURE, tmp_path) <= 1e-4


@pytest.mark.skipif(not PARITY_FILE, reason="set DIFFMTL_DIT_PARITY (tools/dit_parity.py)")
def test_parity_with_the_official_pytorch_dit(tmp_path):
    """Any variant's parity file made by tools/dit_parity.py (e.g. DiT-S/2 with its weights)."""
    print("max |ours - official|:", check_parity_with_official(PARITY_FILE, tmp_path))
