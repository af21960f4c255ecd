"""Writes diffusers' PyTorch AutoencoderKL (random weights) and its outputs, for the parity test.

Runs under any Python with PyTorch and diffusers (a side environment, not this project's):
  python tools/vae_parity.py --out=/tmp/vae_parity [--size=sd|small]
then, in this project's environment:
  DIFFMTL_VAE_PARITY=/tmp/vae_parity python -m pytest tests/test_autoencoder.py -k parity -s

--size=sd is the SD VAE's architecture (KL-f8, 83.7M parameters) on 2 images of 64x64x3;
small a 3-level f4 one on 28x28x1 (the committed fixture tests/fixtures/vae_small_parity.npz:
`--size=small --fixture`). Every parameter is drawn at random by tools/fixture_weights.py
(GroupNorm scales around 1), so each key's mapping matters. The directory gets
diffusion_pytorch_model.safetensors and config.json (diffusers' save_pretrained; not with
--fixture: the test draws the weights again from `shapes`) and parity.npz: x [2, H, W, C]
NHWC in [-1, 1], the posterior's mean and std and the decoded mean, NHWC, the architecture's
sizes and the parameters' names and shapes.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_weights  # noqa: E402  (this directory; NumPy only)

SIZES = {  # name -> (image channels, block channels, blocks per level, image side)
    "sd": (3, (128, 256, 512, 512), 2, 64),
    "small": (1, (32, 64, 64), 1, 28),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", default="sd", choices=sorted(SIZES))
    parser.add_argument("--fixture", action="store_true", help="Leave the weights out.")
    args = parser.parse_args()
    channels, blocks, layers, side = SIZES[args.size]
    os.makedirs(args.out, exist_ok=True)
    vae = AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        block_out_channels=blocks,
        layers_per_block=layers,
        latent_channels=4,
        norm_num_groups=32,
    ).eval()
    shapes = {n: tuple(p.shape) for n, p in vae.named_parameters()}
    weights = fixture_weights.draw(shapes, scale=0.05, norm_offset=True)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            p.copy_(torch.from_numpy(weights[name]))
    if not args.fixture:  # --fixture: the test draws the weights again from `shapes`
        vae.save_pretrained(args.out, safe_serialization=True)
    x = np.random.default_rng(0).uniform(-1, 1, (2, side, side, channels)).astype(np.float32)
    with torch.no_grad():
        posterior = vae.encode(torch.from_numpy(x).permute(0, 3, 1, 2)).latent_dist
        decoded = vae.decode(posterior.mean).sample

    def nhwc(t):
        return t.permute(0, 2, 3, 1).numpy()

    np.savez(
        f"{args.out}/parity.npz",
        x=x,
        mean=nhwc(posterior.mean),
        std=nhwc(posterior.std),
        decoded=nhwc(decoded),
        sizes=json.dumps({"image_channels": channels, "blocks": blocks, "layers": layers}),
        shapes=fixture_weights.encode(shapes),
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
