"""Writes the reference statistics {mu, sigma, features} of a config's data for FID and P&R.

  python -m diffmtl.evaluation.metrics.reference --config=configs/fashion_mnist.py --out=ref.npz
  python -m diffmtl.evaluation.metrics.reference --config=configs/ffhq.py \
      --config.eval.inception_path=... --out=ffhq_ref.npz

Uses eval.feature_network, eval.reference_split and eval.num_reference; point
eval.reference_path at the file to reuse it across runs.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from diffmtl import sharding
from diffmtl.data import from_config as data_from_config
from diffmtl.errors import exit_on_user_error
from diffmtl.evaluation.metrics import features, frechet, sample_quality

FLAGS = flags.FLAGS


def write_reference(config, out: str) -> str:
    """Computes and writes the reference; returns a one-line summary."""
    cfg = config.eval
    source = data_from_config.make_source(config, cfg.reference_split)
    net = features.make_feature_network(cfg)
    extract = features.make_extractor(net, sharding.make_mesh(), cfg.batch_size)
    feats = sample_quality.reference_features(source, extract, cfg.num_reference)
    frechet.save_reference(out, feats, split=cfg.reference_split)
    return f"{out}: {net.name} features of {len(feats)} {config.data.name} images"


def main(argv):
    del argv
    print(exit_on_user_error(write_reference, FLAGS.config, FLAGS.out))


if __name__ == "__main__":  # Flags only here: library users (the sweep) import this module.
    flags.DEFINE_string("out", None, "Where to write the .npz.")
    flags.mark_flags_as_required(["out"])
    config_flags.DEFINE_config_file("config", None, "Configuration file.", lock_config=True)
    app.run(main)
