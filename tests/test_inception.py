"""FID InceptionV3: parameter names, random-weight forward, file errors, pytorch-fid parity."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmtl.errors import UserError
from diffmtl.evaluation.metrics import inception

PARITY_FILE = os.environ.get("DIFFMTL_INCEPTION_PARITY", "")
_LEAF_TO_TORCH = {
    ("conv", "kernel"): ("conv.weight", (3, 2, 0, 1)),
    ("bn", "scale"): ("bn.weight", None),
    ("bn", "bias"): ("bn.bias", None),
    ("bn", "mean"): ("bn.running_mean", None),
    ("bn", "var"): ("bn.running_var", None),
    ("kernel",): ("weight", (1, 0)),
    ("bias",): ("bias", None),
}


def _abstract_params():
    x = jnp.zeros((1, 75, 75, 3), jnp.uint8)
    return jax.eval_shape(inception.InceptionV3().init, jax.random.PRNGKey(0), x)["params"]


def _as_torch_state_dict(params):
    """The inverse of params_from_state_dict, written independently of it."""
    state = {}
    for path, value in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = tuple(k.key for k in path)
        for leaf, (torch_leaf, axes) in _LEAF_TO_TORCH.items():
            if keys[-len(leaf) :] == leaf:
                name = ".".join(keys[: -len(leaf)] + (torch_leaf,))
                state[name] = np.transpose(value, axes) if axes else value
                break
    return state


def test_state_dict_names_and_layouts_round_trip():
    abstract = _abstract_params()
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), abstract)
    state = _as_torch_state_dict(params)
    assert len(state) == len(jax.tree.leaves(params))
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)  # torch [out, in, kh, kw]
    assert state["fc.weight"].shape == (inception.NUM_LOGITS, inception.FEATURE_DIM)
    state["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0)
    back = inception.params_from_state_dict(state)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_load_params_names_the_file_when_missing_or_wrong(tmp_path):
    with pytest.raises(UserError, match=r"inception_path\) file '' is missing"):
        inception.load_params("")
    missing = str(tmp_path / "pt_inception.npz")
    with pytest.raises(UserError, match=f"'{missing}' is missing"):
        inception.load_params(missing)
    wrong = str(tmp_path / "wrong.npz")
    np.savez(wrong, **{"fc.weight": np.zeros((3, 2)), "fc.bias": np.zeros(3)})
    with pytest.raises(UserError, match="does not hold the FID network"):
        inception.load_params(wrong)


@pytest.mark.slow
def test_random_weights_give_2048_features_at_any_input_size():
    model = inception.InceptionV3()
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), images)
    features, logits = jax.jit(model.apply)(params, images)
    assert features.shape == (2, inception.FEATURE_DIM) and logits.shape == (
        2,
        inception.NUM_LOGITS,
    )
    assert np.all(np.isfinite(features)) and np.all(np.asarray(features) >= 0)  # after ReLU
    rgb = np.repeat(images, 3, axis=-1)  # grey images are repeated to RGB
    np.testing.assert_allclose(jax.jit(model.apply)(params, rgb)[0], features, rtol=1e-5)


@pytest.mark.skipif(
    not PARITY_FILE, reason="set DIFFMTL_INCEPTION_PARITY (tools/inception_parity.py)"
)
def test_matches_pytorch_fid_on_a_fixed_image_set():
    with np.load(PARITY_FILE) as data:
        arrays = {k: data[k] for k in data.files}
    state = {k[len("param/") :]: v for k, v in arrays.items() if k.startswith("param/")}
    params = inception.params_from_state_dict(state)
    apply = jax.jit(inception.InceptionV3().apply)
    for size in (28, 64, 320):
        reference = arrays[f"pool_{size}"]
        assert np.std(reference, axis=0).mean() > 0.02 * np.abs(reference).mean()  # input-dependent
        features, logits = apply({"params": params}, arrays[f"images_{size}"])
        scale = np.abs(arrays[f"pool_{size}"]).max()
        np.testing.assert_allclose(features, arrays[f"pool_{size}"], atol=1e-4 * scale, rtol=1e-3)
        scale = np.abs(arrays[f"logits_{size}"]).max()
        np.testing.assert_allclose(logits, arrays[f"logits_{size}"], atol=1e-4 * scale, rtol=1e-3)
