"""Converts an official DiT checkpoint (.pt, facebookresearch/DiT) to the .npz that
diffmtl.models.dit_weights reads (model.init_checkpoint).

  python tools/convert_dit.py --pt=DiT-XL-2-256x256.pt --out=DiT-XL-2-256x256.npz

Needs PyTorch (only here: `pip install torch` in a side environment); the .npz then travels
alone. A training checkpoint of DiT's train.py ({model, ema, opt, args}) loads through PyTorch's
safe loader with argparse.Namespace allowed, and its "ema" entry is used (DiT samples with it).
"""

from __future__ import annotations

from absl import app, flags

FLAGS = flags.FLAGS


def main(argv):
    del argv
    from torch_state_dict import save_arrays, state_dict_arrays  # needs PyTorch

    save_arrays(FLAGS.out, state_dict_arrays(FLAGS.pt, entry="ema"))


if __name__ == "__main__":
    flags.DEFINE_string("pt", None, "The official DiT checkpoint (.pt).", required=True)
    flags.DEFINE_string("out", None, "Where to write the .npz.", required=True)
    app.run(main)
