"""Writes the official DiT's outputs on fixed inputs, for tests/test_dit.py's parity test.

Runs under any Python with PyTorch and a checkout of facebookresearch/DiT (its models.py; not
this project's environment, nothing of it is copied here):
  python tools/dit_parity.py --dit_repo=/src/DiT --variant=DiT-S/2 --out=dit_parity.npz
then, in this project's environment:
  DIFFMTL_DIT_PARITY=dit_parity.npz python -m pytest tests/test_dit.py -k parity

The file holds the model's random weights (every parameter but the fixed pos_embed, including the
zero-initialised modulation and output layers, drawn from N(0, 0.02) by tools/fixture_weights.py,
as 'param/<name>'; left out with --fixture, which the test then draws again from `shapes`), the
inputs x [n, 32, 32, 4] (NHWC), t [n], y [n] (one of them the null label 1000) and the output
[n, 32, 32, 8] (NHWC), and the variant's name.
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_weights  # noqa: E402  (this directory; NumPy only)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dit_repo", required=True, help="A checkout of facebookresearch/DiT.")
    parser.add_argument("--variant", default="DiT-S/2")
    parser.add_argument("--out", required=True)
    parser.add_argument("--fixture", action="store_true", help="Leave the weights out.")
    args = parser.parse_args()
    sys.path.insert(0, args.dit_repo)
    from models import DiT_models  # the official models.py

    model = DiT_models[args.variant](input_size=32, num_classes=1000, learn_sigma=True).eval()
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n != "pos_embed"}
    weights = fixture_weights.draw(shapes)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.copy_(torch.from_numpy(weights[name]))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 32, 32, 4)).astype(np.float32)
    t = np.array([0, 10, 500, 999], np.int64)
    y = np.array([0, 7, 999, 1000], np.int64)
    with torch.no_grad():
        out = model(
            torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(t), torch.from_numpy(y)
        )
    # --fixture: no weights in the file (the test draws them again from `shapes`).
    params = {} if args.fixture else {f"param/{k}": v.numpy() for k, v in weights.items()}
    np.savez(args.out, x=x, t=t, y=y, out=out.permute(0, 2, 3, 1).numpy(), variant=args.variant,
             shapes=fixture_weights.encode(shapes), **params)  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
