"""Random weights both sides of a parity fixture draw alike: NumPy only (no jax, no torch), so
that the reference framework's side (tools/dit_parity.py, tools/vae_parity.py, in a side venv)
and our tests draw the same float32 arrays from the parameter names and shapes a fixture lists.

Why: a fixture then holds inputs, names, shapes and the reference outputs (a few KB), not the
weights (130 MB for DiT-S/2), and can be committed and checked in every test run without torch.
"""

from __future__ import annotations

import json

import numpy as np


def draw(shapes: dict[str, tuple[int, ...]], scale: float = 0.02, norm_offset: bool = False):
    """{name: float32 array}: parameter i (in `shapes`' order) is N(0, scale^2) drawn from
    default_rng([0, i]); with norm_offset, normalisation scales ('norm' in the name, ending in
    'weight') are 1 + that, so that GroupNorm's scale matters without flipping signs."""
    out = {}
    for index, (name, shape) in enumerate(shapes.items()):
        value = np.random.default_rng([0, index]).standard_normal(shape) * scale
        if norm_offset and "norm" in name and name.endswith("weight"):
            value = value + 1.0
        out[name] = value.astype(np.float32)
    return out


def encode(shapes: dict[str, tuple[int, ...]]) -> str:
    """The shapes as a JSON string (stored in the fixture's .npz)."""
    return json.dumps([[name, list(shape)] for name, shape in shapes.items()])


def decode(text) -> dict[str, tuple[int, ...]]:
    """The inverse of `encode`, in the same order."""
    return {name: tuple(shape) for name, shape in json.loads(str(text))}
