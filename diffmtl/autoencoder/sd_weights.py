"""Published SD VAE weights (diffusers' `diffusion_pytorch_model.safetensors`) <-> our params.

Read with the `safetensors` package's NumPy API: no torch, nothing downloaded. Our parameter
path ('encoder', 'down_blocks_0', 'resnets_1', 'conv1', 'kernel') is diffusers' key
'encoder.down_blocks.0.resnets.1.conv1.weight' by rule (kl.py names its modules so); tensors
change layout on the way: conv OIHW -> HWIO, linear [out, in] -> [in, out], GroupNorm 'weight'
-> 'scale'. Two generations of files name the mid-block attention differently: current ones
`to_q / to_k / to_v / to_out.0` as Linear [C, C]; older ones `query / key / value / proj_attn`,
and the original LDM checkpoints stored them as 1x1 convs [C, C, 1, 1]; all three load.

Every problem (a missing file, a key that is missing or left over, a shape that does not fit)
is a UserError naming the file and the first bad key, raised before anything compiles.
"""

from __future__ import annotations

import os
import re

import numpy as np

from diffmtl.errors import UserError

# Older diffusers names of the attention projections (current name -> old name).
_OLD_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def diffusers_key(path: tuple[str, ...]) -> str:
    """('decoder', 'up_blocks_2', 'resnets_0', 'norm1', 'scale') -> 'decoder.up_blocks.2.
    resnets.0.norm1.weight'."""
    *modules, leaf = path
    name = ".".join(re.sub(r"_(\d+)$", r".\1", m) for m in modules)
    return f"{name}.{'bias' if leaf == 'bias' else 'weight'}"


def _to_ours(array: np.ndarray, leaf_shape: tuple[int, ...]) -> np.ndarray:
    """A diffusers tensor in our layout (conv OIHW -> HWIO, linear and 1x1-conv attention
    [out, in(, 1, 1)] -> [in, out]); other tensors as they are."""
    if len(leaf_shape) == 4:
        return np.transpose(array, (2, 3, 1, 0))
    if len(leaf_shape) == 2:
        return np.transpose(array.reshape(array.shape[:2]))
    return array


def _to_theirs(array: np.ndarray) -> np.ndarray:
    """Our tensor in diffusers' layout (the inverse of _to_ours for current files)."""
    if array.ndim == 4:
        return np.ascontiguousarray(np.transpose(array, (3, 2, 0, 1)))
    if array.ndim == 2:
        return np.ascontiguousarray(array.T)
    return array


def _flatten(tree, prefix=()) -> dict[tuple[str, ...], object]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, (*prefix, k)))
        return out
    return {prefix: tree}


def _unflatten(flat: dict[tuple[str, ...], object]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return tree


def _read(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise UserError(
            f"autoencoder weights {path} not found: set autoencoder.checkpoint to a local "
            "diffusion_pytorch_model.safetensors (e.g. stabilityai/sd-vae-ft-ema; nothing is "
            "downloaded)"
        )
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own SafetensorError for bad headers
        raise UserError(f"autoencoder weights {path} is not a safetensors file ({e})") from e


def _present_name(key: str, tensors: dict) -> str:
    """key, or its older attention name when only that is in the file."""
    if key in tensors:
        return key
    for new, old in _OLD_ATTENTION.items():
        if f".{new}." in key:
            return key.replace(f".{new}.", f".{old}.")
    return key


def load_diffusers(path: str, template) -> dict:
    """Params shaped like `template` (a pytree of arrays or ShapeDtypeStructs of
    AutoencoderKL's 'params') from a diffusers safetensors file; UserError naming the first
    missing, unexpected or misshapen key."""
    tensors = _read(path)
    used, out = set(), {}
    for leaf_path, leaf in _flatten(template).items():
        key = _present_name(diffusers_key(leaf_path), tensors)
        if key not in tensors:
            raise UserError(f"autoencoder weights {path}: key {key!r} is missing")
        array = _to_ours(tensors[key], leaf.shape)
        if tuple(array.shape) != tuple(leaf.shape):
            raise UserError(
                f"autoencoder weights {path}: key {key!r} has shape {tensors[key].shape}, the "
                f"config's autoencoder needs {tuple(leaf.shape)} (check autoencoder.* sizes)"
            )
        used.add(key)
        out[leaf_path] = array.astype(np.float32)
    extra = sorted(set(tensors) - used)
    if extra:
        raise UserError(
            f"autoencoder weights {path}: unexpected key {extra[0]!r} ({len(extra)} in all): "
            "not an AutoencoderKL of the config's sizes"
        )
    return _unflatten(out)


def save_diffusers(path: str, params) -> None:
    """Writes params in the current diffusers layout and names (tests, tools)."""
    from safetensors.numpy import save_file

    flat = _flatten(params)
    save_file({diffusers_key(p): _to_theirs(np.asarray(v)) for p, v in flat.items()}, path)
