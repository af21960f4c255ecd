"""Pixel conversions (uint8 <-> model range) and grids for sample previews."""

from __future__ import annotations

import math

import numpy as np
from etils import epath
from PIL import Image


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, C] -> float32 in [-1, 1]."""
    return images.astype(np.float32) / 127.5 - 1.0


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[-1, 1] float [..., H, W, C] -> uint8, rounded (the ADM evaluator's convention)."""
    return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, padding: int = 2, num_classes: int = 0) -> np.ndarray:
    """uint8 [n, H, W, C] -> one roughly square grid [rows (H + p) + p, cols (W + p) + p, C].

    num_classes > 0: image i has label i mod num_classes (the samplers' labels); the grid then
    has one row per class, n // num_classes images in each.
    """
    n, h, w, c = images.shape
    cols = math.ceil(math.sqrt(n))
    if num_classes and n >= num_classes:
        cols = n // num_classes
        n = cols * num_classes  # the first n samples: cols of each class
        images = images[:n][np.argsort(np.arange(n) % num_classes, kind="stable")]
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c), np.uint8)
    for i, image in enumerate(images):
        top, left = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def save_png(path: str, image: np.ndarray) -> None:
    """Writes uint8 [H, W, C] (C = 1 or 3) as a PNG."""
    with epath.Path(path).open("wb") as f:  # A local path or a bucket.
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(f, format="PNG")
