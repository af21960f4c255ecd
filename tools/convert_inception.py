"""Converts pytorch-fid's FID Inception weights (.pth) to the .npz that inception.load_params reads.

  python tools/convert_inception.py --pth=pt_inception-2015-12-05-6726825d.pth \
      --out=pt_inception-2015-12-05.npz

Needs PyTorch (only here: `pip install torch`), on any machine; the .npz then travels alone.
"""

from __future__ import annotations

from absl import app, flags

FLAGS = flags.FLAGS


def main(argv):
    del argv
    from torch_state_dict import save_arrays, state_dict_arrays  # needs PyTorch

    from diffmtl.evaluation.metrics import inception

    arrays = state_dict_arrays(FLAGS.pth)
    inception.params_from_state_dict(arrays)  # Fails here, not later, on an unexpected file.
    save_arrays(FLAGS.out, arrays)


if __name__ == "__main__":
    flags.DEFINE_string("pth", None, "pytorch-fid's weights file.", required=True)
    flags.DEFINE_string("out", None, "Where to write the .npz.", required=True)
    app.run(main)
