"""InceptionV3 for FID in Flax, with the pytorch-fid convention and weights from a local file.

FID is defined by one network: the 2015-12-05 TensorFlow Inception graph of the original FID
code. pytorch-fid ships it ported to PyTorch as `pt_inception-2015-12-05-6726825d.pth`; its
blocks differ from torchvision's InceptionV3 in the pooling of Mixed_5b..Mixed_6e and Mixed_7b
(average pooling that excludes the padding) and Mixed_7c (max pooling), and its classifier has
1008 outputs. This module rebuilds that network with the same parameter names, so the .pth's
state dict converts mechanically (convert_inception.py writes it as an .npz, which
`load_params` reads; the README says where the file comes from).

Input convention (pytorch-fid): uint8 images -> [0, 1] -> bilinear resize to 299 x 299 (half-pixel
centres, no antialiasing: torch's `interpolate(..., align_corners=False)`) -> [-1, 1]; grey
images are repeated to 3 channels. Output: pool3 features [n, 2048] and logits [n, 1008].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from diffmtl.errors import UserError
from diffmtl.evaluation.metrics import params_io

FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
FEATURE_DIM = 2048
NUM_LOGITS = 1008
INPUT_SIZE = 299
BN_EPSILON = 1e-3


class FrozenBatchNorm(nn.Module):
    """Inference-mode batch norm whose statistics are parameters (they come from the file)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.param("mean", nn.initializers.zeros, (c,))
        var = self.param("var", nn.initializers.ones, (c,))
        return (x - mean) * (scale * jax.lax.rsqrt(var + BN_EPSILON)) + bias


class BasicConv(nn.Module):
    """Convolution without bias, frozen batch norm, ReLU (torchvision's BasicConv2d)."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = [(p, p) for p in self.padding]
        x = nn.Conv(self.features, self.kernel, self.strides, pad, use_bias=False, name="conv")(x)
        return nn.relu(FrozenBatchNorm(name="bn")(x))


def _avg_pool(x: jax.Array) -> jax.Array:  # 3x3, stride 1, the padding not counted
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x: jax.Array, strides: int = 2, pad: int = 0) -> jax.Array:
    return nn.max_pool(x, (3, 3), (strides, strides), ((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, name="branch1x1")(x)
        b5 = BasicConv(48, name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, name="branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = BasicConv(64, name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        b1 = BasicConv(192, name="branch1x1")(x)
        b7 = BasicConv(c, name="branch7x7_1")(x)
        b7 = BasicConv(c, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv(c, name="branch7x7dbl_1")(x)
        bd = BasicConv(c, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, name="branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


class InceptionE(nn.Module):
    max_pool: bool  # FID's Mixed_7c pools by max, Mixed_7b by average (padding excluded).

    @nn.compact
    def __call__(self, x):
        def split_3x3(h, prefix):  # parallel (1, 3) and (3, 1) convolutions, concatenated
            a = BasicConv(384, (1, 3), padding=(0, 1), name=f"{prefix}a")(h)
            b = BasicConv(384, (3, 1), padding=(1, 0), name=f"{prefix}b")(h)
            return jnp.concatenate([a, b], axis=-1)

        b1 = BasicConv(320, name="branch1x1")(x)
        b3 = split_3x3(BasicConv(384, name="branch3x3_1")(x), "branch3x3_2")
        bd = BasicConv(448, name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = split_3x3(bd, "branch3x3dbl_3")
        pooled = _max_pool(x, strides=1, pad=1) if self.max_pool else _avg_pool(x)
        bp = BasicConv(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def preprocess(images: jax.Array) -> jax.Array:
    """uint8 (or [0, 255] float) [n, H, W, 1 or 3] -> [n, 299, 299, 3] in [-1, 1]."""
    x = images.astype(jnp.float32) / 255.0
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    shape = (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3)
    return 2.0 * jax.image.resize(x, shape, "bilinear", antialias=False) - 1.0


class InceptionV3(nn.Module):
    """images [n, H, W, C] (uint8 range) -> (pool3 features [n, 2048], logits [n, 1008])."""

    @nn.compact
    def __call__(self, images: jax.Array):
        x = preprocess(images)
        x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool(x)
        x = BasicConv(80, name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool(x)
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, name=name)(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, channels in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160)):
            x = InceptionC(channels, name=name)(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(max_pool=False, name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        features = jnp.mean(x, axis=(1, 2))  # [n, 2048] pool3
        return features, nn.Dense(NUM_LOGITS, name="fc")(features)


_TORCH_SUFFIXES = {  # torch state-dict leaf -> (Flax path leaf, layout change)
    "conv.weight": (("conv", "kernel"), (2, 3, 1, 0)),  # [out, in, kh, kw] -> [kh, kw, in, out]
    "bn.weight": (("bn", "scale"), None),
    "bn.bias": (("bn", "bias"), None),
    "bn.running_mean": (("bn", "mean"), None),
    "bn.running_var": (("bn", "var"), None),
    "weight": (("kernel",), (1, 0)),  # fc: [out, in] -> [in, out]
    "bias": (("bias",), None),
}


def params_from_state_dict(state_dict: dict[str, np.ndarray]) -> dict:
    """pytorch-fid state dict (name -> array) -> this module's params; bugs or odd files raise."""
    params: dict = {}
    for name, value in state_dict.items():
        if name.endswith("num_batches_tracked"):
            continue
        suffix = next((s for s in _TORCH_SUFFIXES if name.endswith("." + s)), None)
        if suffix is None:
            raise ValueError(f"unexpected parameter {name!r}")
        leaf, axes = _TORCH_SUFFIXES[suffix]
        path = tuple(name[: -len(suffix) - 1].split(".")) + leaf
        node = params
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = np.transpose(value, axes) if axes else np.asarray(value)
    return params


def load_params(path: str) -> dict:
    """Params from an .npz of the pytorch-fid state dict; UserError naming the file if unusable."""
    fix = (
        f"convert {FILE_NAME} with `python tools/convert_inception.py` (README: "
        "'FID on natural images') and set eval.inception_path to the .npz"
    )
    arrays = params_io.read_npz(path, "Inception weights (eval.inception_path)", fix)
    try:
        params = params_from_state_dict(arrays)
    except ValueError as e:
        raise UserError(f"Inception weights file {path} is unusable ({e}): {fix}") from e
    expected = jax.eval_shape(
        InceptionV3().init, jax.random.PRNGKey(0), jnp.zeros((1, 75, 75, 3), jnp.uint8)
    )["params"]
    got = jax.tree.map(np.shape, params)
    want = jax.tree.map(lambda s: s.shape, expected)
    if got != want:
        raise UserError(f"Inception weights file {path} does not hold the FID network: {fix}")
    return params
