"""Our own autoencoder weights: .npz files of save_params, and the committed Fashion-MNIST VAE.

The Fashion-MNIST KL autoencoder (28x28x1 centre-padded to 32 -> 8x8x4 latents; config in
FMNIST_SIZES) is trained by `python tools/train_fmnist_autoencoder.py` and committed with its
checksum, like the FID_FMNIST classifier: XLA's results differ slightly between CPU models, so
retraining would give other latents and invalidate every latent cache and checkpoint.
"""

from __future__ import annotations

import os

from diffmtl.errors import UserError
from diffmtl.evaluation.metrics import params_io

FMNIST_WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "fmnist_kl_f4.npz")
FMNIST_SHA256 = "62405314817bdc75d587dee18107569f2a0ac4fe2ed2018e641bfa0958407bc5"
# 1 / the std of the training latents (2.3988, printed by the tool), as SD's 0.18215.
FMNIST_SCALE = 0.4169
REGENERATE = "python -m tools.train_fmnist_autoencoder"
# config.autoencoder fields of the committed Fashion-MNIST autoencoder.
FMNIST_SIZES = {
    "base_channels": 16,
    "channel_mults": (1, 2, 4),
    "num_res_blocks": 1,
    "latent_channels": 4,
    "num_groups": 8,
    "input_size": 32,
}


def load_npz(path: str) -> dict:
    """Params from an .npz of ours; the committed Fashion-MNIST file is checked against its
    checksum (UserError if it differs or is missing)."""
    params, digest = params_io.load_params(
        path, "autoencoder weights", f"train them with `{REGENERATE}` or fix the path"
    )
    committed = os.path.abspath(path) == os.path.abspath(FMNIST_WEIGHTS)
    if committed and FMNIST_SHA256 and digest != FMNIST_SHA256:
        raise UserError(
            f"autoencoder weights {path} have checksum {digest[:12]}..., expected "
            f"{FMNIST_SHA256[:12]}...: restore them with `git checkout {path}`"
        )
    return params


def use_fmnist_autoencoder(config) -> None:
    """Sets config.autoencoder to the committed Fashion-MNIST autoencoder."""
    for field, value in FMNIST_SIZES.items():
        config.autoencoder[field] = value
    config.autoencoder.checkpoint = FMNIST_WEIGHTS
    config.autoencoder.scale_factor = FMNIST_SCALE
