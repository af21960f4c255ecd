"""Writes pytorch-fid's outputs on a fixed image set, for tests/test_inception.py's parity test.

Runs under any Python with PyTorch and pytorch-fid (not this project's environment):
  python tools/inception_parity.py --out=parity.npz                       # random weights
  python tools/inception_parity.py --pth=pt_inception-2015-12-05-6726825d.pth --out=parity.npz
then, in this project's environment:
  DIFFMTL_INCEPTION_PARITY=parity.npz python -m pytest tests/test_inception.py

The file holds the weights (state dict, as 'param/<name>'), the uint8 images [n, H, W, 3] (a
fixed pseudo-random set at three sizes), pytorch-fid's pool3 features and the 1008 logits
(fc applied to pool3). The Frechet distance itself is checked against scipy's sqrtm, which
pytorch-fid uses, in tests/test_metrics.py.
"""

import argparse

import numpy as np
import torch
from pytorch_fid import inception as pfid


def fixed_images(size: int, n: int, seed: int) -> np.ndarray:
    """Smooth pseudo-random uint8 images [n, size, size, 3] (blurred noise, not flat)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 8, 8, 3))
    x = np.kron(coarse, np.ones((1, size // 8 + 1, size // 8 + 1, 1)))[:, :size, :size]
    return np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere, batch-norm statistics included."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("bn.weight"):  # Scales near 1 keep the input's signal alive.
                tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=gen))
            elif name.endswith("weight") and tensor.ndim > 1:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=gen))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pth", default="", help="FID weights; random weights if empty")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    real_loader = pfid.load_state_dict_from_url
    pfid.load_state_dict_from_url = lambda *a, **k: (
        torch.load(args.pth, map_location="cpu") if args.pth else None
    )
    if not args.pth:
        torch.nn.Module.load_state_dict = lambda self, state_dict, *a, **k: None
    raw = pfid.fid_inception_v3()
    pfid.load_state_dict_from_url = real_loader
    if not args.pth:
        randomise(raw, seed=0)
    pfid.fid_inception_v3 = lambda: raw  # The wrapper below uses these very modules.
    wrapper = pfid.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    raw.eval()

    sets = {s: fixed_images(s, 4, s) for s in (28, 64, 320)}
    out = {}
    with torch.no_grad():
        for size, images in sets.items():
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
            pool = wrapper(x)[0][:, :, 0, 0]
            out[f"images_{size}"] = images
            out[f"pool_{size}"] = pool.numpy()
            out[f"logits_{size}"] = raw.fc(pool).numpy()
    for name, tensor in raw.state_dict().items():
        out[f"param/{name}"] = tensor.numpy()
    np.savez(args.out, **out)
    print(f"wrote {args.out}: {len(out)} arrays")


if __name__ == "__main__":
    main()
