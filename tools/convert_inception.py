"""Converts pytorch-fid's FID Inception weights (.pth) to the .npz that inception.load_params reads.

  python tools/convert_inception.py --pth=pt_inception-2015-12-05-6726825d.pth \
      --out=pt_inception-2015-12-05.npz

Needs PyTorch (only here: `pip install torch`), on any machine; the .npz then travels alone.
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS


def main(argv):
    del argv
    import torch  # Only this one-off conversion needs PyTorch.

    from diffmtl.evaluation.metrics import inception

    state_dict = torch.load(FLAGS.pth, map_location="cpu")
    arrays = {name: tensor.numpy() for name, tensor in state_dict.items()}
    inception.params_from_state_dict(arrays)  # Fails here, not later, on an unexpected file.
    np.savez(FLAGS.out, **arrays)
    print(f"wrote {len(arrays)} arrays to {FLAGS.out}")


if __name__ == "__main__":
    flags.DEFINE_string("pth", None, "pytorch-fid's weights file.", required=True)
    flags.DEFINE_string("out", None, "Where to write the .npz.", required=True)
    app.run(main)
