"""Parameter trees <-> flat .npz files (checksummed by content), and reading .npz files safely."""

from __future__ import annotations

import hashlib

import numpy as np
from etils import epath
from flax import traverse_util

from diffmtl.errors import UserError


def save_params(path: str, params) -> str:
    """Writes a nested dict of arrays as an .npz keyed 'a/b/c'; returns its checksum."""
    flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()}
    with epath.Path(path).open("wb") as f:
        np.savez(f, **flat)
    return checksum(flat)


def read_npz(path: str, what: str, fix: str) -> dict[str, np.ndarray]:
    """All arrays of an .npz; UserError naming `what`, `path` and `fix` if missing or unreadable."""
    if not path or not epath.Path(path).is_file():
        raise UserError(f"{what} file {path!r} is missing: {fix}")
    try:
        with epath.Path(path).open("rb") as f, np.load(f) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise UserError(f"{what} file {path} is unreadable ({e}): {fix}") from e


def load_params(path: str, what: str, fix: str) -> tuple[dict, str]:
    """(nested params, checksum) from an .npz of save_params; UserError naming `path` if absent."""
    flat = read_npz(path, what, fix)
    return traverse_util.unflatten_dict(flat, sep="/"), checksum(flat)


def checksum(flat: dict[str, np.ndarray]) -> str:
    """sha256 over the sorted names, dtypes, shapes and bytes of the arrays."""
    digest = hashlib.sha256()
    for name in sorted(flat):
        array = np.ascontiguousarray(flat[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
