"""A PyTorch checkpoint's state dict as NumPy arrays: what the weight converters share.

Needs PyTorch; imported by tools/convert_inception.py and tools/convert_dit.py only.
"""

import numpy as np


def state_dict_arrays(path: str, entry: str = "") -> dict[str, np.ndarray]:
    """name -> float32 array of the state dict in `path` (its `entry` sub-dict when present,
    e.g. 'ema' of a training checkpoint)."""
    import torch

    checkpoint = torch.load(path, map_location="cpu")
    if entry and isinstance(checkpoint, dict) and entry in checkpoint:
        checkpoint = checkpoint[entry]
    return {name: tensor.float().numpy() for name, tensor in checkpoint.items()}


def save_arrays(path: str, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)
    print(f"wrote {len(arrays)} arrays to {path}")
