"""Trains a diffusion model as a multi-task learner over timestep clusters.

  python main.py --config=configs/fashion_mnist.py --workdir=/tmp/fmnist
  python main.py --config=configs/fashion_mnist.py --workdir=/tmp/fmnist --config.clustering.k=1

Mistakes in the config or data end in one line on stderr and exit status 2.
"""

import logging as py_logging

from absl import app, flags, logging
from ml_collections import config_flags

from diffmtl.errors import exit_on_user_error

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and samples.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


class _QuietCheckpointing(py_logging.Filter):
    """Drops orbax's per-save INFO chatter from the console; its warnings still show."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return "/orbax/" not in record.pathname or record.levelno >= py_logging.WARNING


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_QuietCheckpointing())
    from diffmtl import train  # Imported late: the flags are parsed before JAX starts.

    exit_on_user_error(train.train_and_evaluate, FLAGS.config, FLAGS.workdir)
    print(f"Done: samples.png, checkpoints/ and TensorBoard events are in {FLAGS.workdir}")


if __name__ == "__main__":
    app.run(main)
