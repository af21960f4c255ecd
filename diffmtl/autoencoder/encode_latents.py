"""Builds a config's latent cache: every split it trains and evaluates on, encoded once.

  python -m diffmtl.autoencoder.encode_latents --config=configs/imagenet256_dit.py \
      [--config.autoencoder.cache_dir=/data/latents/imagenet] [--splits=train]
  # a TPU pod or GPU cluster: the same on every host with --multihost

Each process encodes its shards on its own devices; a killed run resumes where it stopped
(latent_cache.py). Training builds a missing cache itself; this command does it ahead of time
(for ImageNet: hours on one GPU) and prints where it is.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from diffmtl.errors import UserError, exit_on_user_error

FLAGS = flags.FLAGS


def encode(config, splits: list[str]) -> str:
    """Encodes `splits` (default: data.split and eval.reference_split); returns a summary."""
    import jax

    from diffmtl import config_validation
    from diffmtl.data import from_config

    if config.data.name != "latents":
        raise UserError(f"data.name={config.data.name!r}: the config trains on no latent cache")
    config_validation.validate(config, jax.device_count())
    lines = []
    for split in splits or dict.fromkeys([config.data.split, config.eval.reference_split]):
        source = from_config.make_source(config, split)  # encodes what is missing
        lines.append(f"{split}: {source.num_examples} examples of latents {source.latent_shape}")
    return f"latent cache {config.autoencoder.cache_dir}: " + "; ".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.multihost:
        import jax

        jax.distributed.initialize()
    print(exit_on_user_error(encode, FLAGS.config, FLAGS.splits))


if __name__ == "__main__":
    config_flags.DEFINE_config_file(
        "config", None, "Training configuration file.", lock_config=True
    )
    flags.DEFINE_list("splits", [], "Splits to encode (default: data.split, eval.reference_split).")
    flags.DEFINE_bool(
        "multihost", False, "jax.distributed.initialize() first (every host runs it)."
    )
    flags.mark_flags_as_required(["config"])
    app.run(main)
