"""DiT weights in the official release's layout (facebookresearch/DiT state dicts), from a local
.npz: what `tools/convert_dit.py` writes from DiT-XL-2-256x256.pt (the one step that needs
PyTorch), read here with NumPy only (allow_pickle=False, nothing downloaded).

Official names and layouts -> ours (Linear weights are [out, in]: transposed; the patch
projection is a [D, C, p, p] convolution: -> [p, p, C, D]):
  x_embedder.proj.{weight,bias}             patch_embed.{kernel,bias}
  t_embedder.mlp.{0,2}.{weight,bias}        t_mlp_in / t_mlp_out
  y_embedder.embedding_table.weight         y_embed.embedding   [num_classes + 1, D]
  blocks.i.attn.qkv / attn.proj             block_i.attn.qkv / attn.proj
  blocks.i.mlp.fc1 / mlp.fc2                block_i.fc1 / fc2
  blocks.i.adaLN_modulation.1               block_i.adaLN
  final_layer.adaLN_modulation.1            final_adaLN
  final_layer.linear                        final
  pos_embed                                 (a constant here; checked, not loaded)
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
from flax import traverse_util

from diffmtl.errors import UserError
from diffmtl.models import dit

CONVERT = "convert the official checkpoint with `python tools/convert_dit.py` (README: DiT weights)"


def _linear(prefix: str) -> dict[str, tuple[str, str]]:
    return {f"{prefix}.weight": ("kernel", "linear"), f"{prefix}.bias": ("bias", "bias")}


def official_names(depth: int) -> dict[str, tuple[tuple[str, ...], str]]:
    """official key -> (our parameter path, layout: 'linear' | 'conv' | 'bias' | 'table')."""
    names = {
        "x_embedder.proj.weight": (("patch_embed", "kernel"), "conv"),
        "x_embedder.proj.bias": (("patch_embed", "bias"), "bias"),
        "y_embedder.embedding_table.weight": (("y_embed", "embedding"), "table"),
    }
    modules = {
        "t_embedder.mlp.0": ("t_mlp_in",),
        "t_embedder.mlp.2": ("t_mlp_out",),
        "final_layer.adaLN_modulation.1": ("final_adaLN",),
        "final_layer.linear": ("final",),
    }
    for i in range(depth):
        block = f"block_{i}"
        modules.update(
            {
                f"blocks.{i}.attn.qkv": (block, "attn", "qkv"),
                f"blocks.{i}.attn.proj": (block, "attn", "proj"),
                f"blocks.{i}.mlp.fc1": (block, "fc1"),
                f"blocks.{i}.mlp.fc2": (block, "fc2"),
                f"blocks.{i}.adaLN_modulation.1": (block, "adaLN"),
            }
        )
    for prefix, path in modules.items():
        for key, (leaf, layout) in _linear(prefix).items():
            names[key] = ((*path, leaf), layout)
    return names


# layout -> the axis permutation from the official array to ours (none: the same array).
PERMUTATIONS = {"linear": (1, 0), "conv": (2, 3, 1, 0)}  # [out, in]; [D, C, p, p] -> HWIO


def _to_ours(array: np.ndarray, layout: str) -> np.ndarray:
    perm = PERMUTATIONS.get(layout)
    return array if perm is None else array.transpose(perm)


def _to_official(array: np.ndarray, layout: str) -> np.ndarray:
    perm = PERMUTATIONS.get(layout)
    return array if perm is None else array.transpose(np.argsort(perm))


def to_official(params, variant: str, input_size: int) -> dict[str, np.ndarray]:
    """Our DiT params -> the official state dict's arrays (with its pos_embed [1, N, D])."""
    depth, hidden, _, patch = dit.parse_variant(variant)
    flat = traverse_util.flatten_dict(params)
    out = {
        key: _to_official(np.asarray(flat[path]), layout)
        for key, (path, layout) in official_names(depth).items()
    }
    table = dit.sincos_position_embedding(hidden, input_size // patch)
    out["pos_embed"] = table[None]
    return out


def load_official(path: str, template, variant: str) -> dict:
    """Params shaped like `template` (a DiT params tree, arrays or ShapeDtypeStructs) from the
    official-layout .npz at `path`; UserError naming the file and the first bad key."""
    if not os.path.isfile(path):
        raise UserError(f"DiT weights file {path} does not exist: {CONVERT}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{path} is not a readable .npz of DiT weights ({e}): {CONVERT}") from e
    depth = dit.parse_variant(variant)[0]
    names = official_names(depth)
    unexpected = sorted(set(arrays) - set(names) - {"pos_embed"})
    missing = [key for key in names if key not in arrays]
    if missing or unexpected:
        which = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise UserError(f"{path} does not hold {variant} weights: {which} ({CONVERT})")
    flat_template = traverse_util.flatten_dict(template)
    flat = {}
    for key, (ours, layout) in names.items():
        value = _to_ours(arrays[key], layout)
        expected = tuple(flat_template[ours].shape)
        if value.shape != expected:
            raise UserError(
                f"{path}: {key} has shape {arrays[key].shape}, {variant} with this config needs "
                f"{_to_official(np.zeros(expected), layout).shape} (check model.variant, "
                "data.num_classes, diffusion.learn_sigma, data.image_size)"
            )
        flat[ours] = value.astype(np.float32)
    return traverse_util.unflatten_dict(flat)
