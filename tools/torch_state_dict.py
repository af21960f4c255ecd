"""A PyTorch checkpoint's state dict as NumPy arrays: what the weight converters share.

Needs PyTorch; imported by tools/convert_inception.py and tools/convert_dit.py only.
"""

import numpy as np


def load_checkpoint(path: str):
    """torch.load with PyTorch's safe loader (weights_only, the default since torch 2.6), which
    refuses a training checkpoint of DiT's train.py ({model, ema, opt, args}) for its
    argparse.Namespace: that one class is allowed, rather than unpickling anything
    (weights_only=False would run arbitrary code from the file)."""
    import argparse

    import torch

    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    if allow is None:
        return torch.load(path, map_location="cpu", weights_only=True)
    with allow([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def state_dict_arrays(path: str, entry: str = "") -> dict[str, np.ndarray]:
    """name -> float32 array of the state dict in `path` (its `entry` sub-dict when present,
    e.g. 'ema' of a training checkpoint)."""
    checkpoint = load_checkpoint(path)
    if entry and isinstance(checkpoint, dict) and entry in checkpoint:
        checkpoint = checkpoint[entry]
    return {name: tensor.float().numpy() for name, tensor in checkpoint.items()}


def save_arrays(path: str, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)
    print(f"wrote {len(arrays)} arrays to {path}")
