"""DiT (Peebles & Xie 2023): a class-conditional diffusion transformer in Flax Linen.

Patchify (a p x p convolution of stride p) -> + fixed 2-D sin-cos position embedding -> N
blocks with adaLN-Zero conditioning on c = t_emb + y_emb -> final adaLN layer -> linear to
p p C_out per token -> unpatchify. Every block's modulation (shift, scale, gate for attention
and MLP) and the final layer start at zero, so an untrained DiT predicts exactly 0 and every
block starts as the identity. Attention is `jax.nn.dot_product_attention` (XLA's on CPU; cuDNN
flash attention on GPUs through `model.attention_implementation='cudnn'`).

Class labels y [B] int take values 0..num_classes-1, and num_classes is the "null" label of
classifier-free guidance (its own embedding row, as DiT's table of num_classes + 1 rows). Label
dropout is the training step's job (training/steps.py), drawn from each example's key.

Initialisation follows DiT's code: Xavier-uniform linear layers and patch projection (as a
flattened matrix), zero biases, N(0, 0.02) label embedding and timestep MLP, zero modulation and
output layers. The position embedding is a constant, not a parameter (DiT keeps it frozen).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from diffmtl.errors import UserError, require
from diffmtl.models import common

# name -> (depth, hidden size, heads): DiT paper Table 1, and Ti (DeiT-Ti's sizes, not in the
# DiT paper) for CPU-sized runs; the patch size is the name's /p.
VARIANTS = {
    "Ti": (12, 192, 3),
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
}
FREQUENCY_DIM = 256  # DiT's sinusoidal timestep features before the MLP

_xavier = nn.initializers.xavier_uniform()
_zeros = nn.initializers.zeros
_normal = nn.initializers.normal(0.02)


def parse_variant(name: str) -> tuple[int, int, int, int]:
    """'DiT-XL/2' -> (depth, hidden, heads, patch); ValueError for an unknown name."""
    prefix, _, patch = name.partition("/")
    size = prefix.removeprefix("DiT-")
    if not prefix.startswith("DiT-") or size not in VARIANTS or patch not in ("2", "4", "8"):
        raise ValueError(
            f"model.variant={name!r} is unknown; use DiT-<{'|'.join(VARIANTS)}>/<2|4|8>"
        )
    return (*VARIANTS[size], int(patch))


def sincos_position_embedding(dim: int, grid: int) -> np.ndarray:
    """[grid * grid, dim] fixed 2-D sin-cos embedding (MAE / DiT): half the channels encode the
    row, half the column, each as [sin, cos] of positions times 1 / 10000^(2i / (dim / 2))."""
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")

    def embed(pos: np.ndarray) -> np.ndarray:  # [grid * grid] -> [grid * grid, dim / 2]
        angles = pos.reshape(-1, 1) * omega[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    # DiT's meshgrid puts the column index first: w varies along the embedding's first half.
    return np.concatenate([embed(cols), embed(rows)], axis=1).astype(np.float32)


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    """x [B, N, D] * (1 + scale) + shift, shift and scale [B, D]."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


def _layer_norm(x: jax.Array, dtype) -> jax.Array:
    """LayerNorm without affine parameters, eps 1e-6 (adaLN supplies scale and shift)."""
    return nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False, dtype=dtype)(x)


class PatchEmbed(nn.Module):
    """x [B, H, W, C] -> [B, (H / p) (W / p), D]: each p x p patch (row-major) times a [p, p, C, D]
    kernel, plus bias.

    Parameters as DiT's stride-p convolution (nn.Conv's HWIO kernel and bias), applied as one
    matmul of the patches: XLA:CPU's convolution backward is slower than the matmul's.
    """

    patch_size: int
    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, height, width, channels = x.shape
        p, d = self.patch_size, self.features
        init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1, 2))
        kernel = self.param("kernel", init, (p, p, channels, d)).astype(self.dtype)
        bias = self.param("bias", _zeros, (d,)).astype(self.dtype)
        patches = x.astype(self.dtype).reshape(b, height // p, p, width // p, p, channels)
        patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, p * p * channels)
        return patches @ kernel.reshape(p * p * channels, d) + bias


class QKV(nn.Module):
    """The query, key and value projections of x [B, N, D], each [B, N, heads, D / heads].

    Parameters as one nn.Dense(3 D) (kernel [D, 3 D], bias [3 D]; DiT's fused qkv), applied as
    three [D, D] matmuls: each result is already in dot_product_attention's [B, N, heads, head]
    layout, where splitting one [B, N, 3 D] product costs a copy forward and a concatenation of
    the three gradients backward (5% of a DiT-S/2 step on XLA:CPU).
    """

    num_heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        b, n, d = x.shape
        kernel = self.param("kernel", _xavier, (d, 3 * d)).astype(self.dtype)
        bias = self.param("bias", _zeros, (3 * d,)).astype(self.dtype)
        x = x.astype(self.dtype)
        return tuple(
            (x @ kernel[:, i * d : (i + 1) * d] + bias[i * d : (i + 1) * d]).reshape(
                b, n, self.num_heads, d // self.num_heads
            )
            for i in range(3)
        )


class Attention(nn.Module):
    """Multi-head self-attention: x [B, N, D] -> [B, N, D]."""

    num_heads: int
    dtype: jnp.dtype = jnp.float32
    implementation: str | None = None  # jax.nn.dot_product_attention's (None: XLA's choice)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, d = x.shape
        q, k, v = QKV(self.num_heads, self.dtype, name="qkv")(x)
        out = jax.nn.dot_product_attention(
            q, k, v, implementation=self.implementation
        )  # [B, N, heads, D / heads]
        return nn.Dense(d, kernel_init=_xavier, dtype=self.dtype, name="proj")(out.reshape(b, n, d))


class DiTBlock(nn.Module):
    """x [B, N, D], c [B, D] -> x + gated attention + gated MLP, both adaLN-modulated by c."""

    num_heads: int
    mlp_ratio: float = 4.0
    dtype: jnp.dtype = jnp.float32
    attention_implementation: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        d = x.shape[-1]
        modulation = nn.Dense(6 * d, kernel_init=_zeros, dtype=self.dtype, name="adaLN")(nn.silu(c))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = jnp.split(
            modulation, 6, axis=-1
        )
        h = modulate(_layer_norm(x, self.dtype), shift_msa, scale_msa)
        h = Attention(self.num_heads, self.dtype, self.attention_implementation, name="attn")(h)
        x = x + gate_msa[:, None, :] * h
        h = modulate(_layer_norm(x, self.dtype), shift_mlp, scale_mlp)
        h = nn.Dense(int(d * self.mlp_ratio), kernel_init=_xavier, dtype=self.dtype, name="fc1")(h)
        h = nn.gelu(h, approximate=True)
        h = nn.Dense(d, kernel_init=_xavier, dtype=self.dtype, name="fc2")(h)
        return x + gate_mlp[:, None, :] * h


class DiT(common.Denoiser):
    """eps_theta(x_t, t, y) (with learn_sigma: [eps, v]); common.Denoiser holds out_channels and
    dtype (dropout: DiT has none, so it must be 0).

    Attributes:
      patch_size: p; the example's height and width must be multiples of it.
      hidden_size, depth, num_heads: D, the number of blocks and attention heads.
      mlp_ratio: MLP width over D.
      num_classes: class labels 0..num_classes-1 plus the null label num_classes (CFG); 0 makes
        the model unconditional (cond must be None).
      attention_implementation: None (XLA) or 'cudnn' (flash attention on NVIDIA GPUs).
    """

    patch_size: int = 2
    hidden_size: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    num_classes: int = 0
    attention_implementation: str | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        """x [B, H, W, C], t [B], cond [B] int labels (None when unconditional) ->
        [B, H, W, out_channels]."""
        del train  # no dropout in DiT
        b, height, width, _ = x.shape
        p, d = self.patch_size, self.hidden_size
        grid_h, grid_w = height // p, width // p
        h = PatchEmbed(p, d, self.dtype, name="patch_embed")(x)
        if grid_h != grid_w:
            raise ValueError(f"DiT takes square inputs, got {height}x{width}")
        h = h + sincos_position_embedding(d, grid_h).astype(self.dtype)[None]

        c = common.timestep_embedding(t, FREQUENCY_DIM)
        c = nn.Dense(d, kernel_init=_normal, dtype=self.dtype, name="t_mlp_in")(c)
        c = nn.Dense(d, kernel_init=_normal, dtype=self.dtype, name="t_mlp_out")(nn.silu(c))
        if self.num_classes:
            common.require_labels(cond)
            table = nn.Embed(self.num_classes + 1, d, embedding_init=_normal, name="y_embed")
            c = c + table(cond).astype(self.dtype)
        else:
            common.require_unconditional(cond)

        for i in range(self.depth):
            h = DiTBlock(
                self.num_heads,
                self.mlp_ratio,
                self.dtype,
                self.attention_implementation,
                name=f"block_{i}",
            )(h, c)

        shift, scale = jnp.split(
            nn.Dense(2 * d, kernel_init=_zeros, dtype=self.dtype, name="final_adaLN")(nn.silu(c)),
            2,
            axis=-1,
        )
        h = modulate(_layer_norm(h, self.dtype), shift, scale)
        h = nn.Dense(p * p * self.out_channels, kernel_init=_zeros, dtype=self.dtype, name="final")(
            h
        )
        h = h.reshape(b, grid_h, grid_w, p, p, self.out_channels)
        h = h.transpose(0, 1, 3, 2, 4, 5).reshape(b, height, width, self.out_channels)
        return h.astype(jnp.float32)


def check_config(config, example_shape: tuple[int, int, int]) -> None:
    """UserError naming the first field of config.model that cannot build this DiT."""
    cfg = config.model
    try:
        patch = parse_variant(cfg.variant)[3]
    except ValueError as e:
        raise UserError(str(e)) from e
    size = example_shape[0]
    require(
        example_shape[0] == example_shape[1] and size % patch == 0,
        f"model.variant={cfg.variant!r} has patch {patch}: data.image_size={size} must be a "
        f"multiple of it (square inputs)",
    )
    require(cfg.dropout == 0, f"model.dropout={cfg.dropout}: DiT has no dropout; set it to 0")
    require(
        not cfg.init_checkpoint or cfg.init_checkpoint.endswith(".npz"),
        f"model.init_checkpoint={cfg.init_checkpoint!r} must be an .npz from tools/convert_dit.py",
    )
    require(
        cfg.attention_implementation in ("xla", "cudnn"),
        f"model.attention_implementation={cfg.attention_implementation!r} is unknown; use 'xla' "
        "or 'cudnn' (NVIDIA GPUs)",
    )


def make_model(config, out_channels: int) -> DiT:
    """The DiT named by config.model.variant, conditioned on config.data.num_classes classes."""
    depth, hidden, heads, patch = parse_variant(config.model.variant)
    implementation = config.model.attention_implementation
    return DiT(
        out_channels,
        dtype=jnp.dtype(config.model.dtype),
        patch_size=patch,
        hidden_size=hidden,
        depth=depth,
        num_heads=heads,
        num_classes=config.data.num_classes,
        attention_implementation=None if implementation == "xla" else implementation,
    )
