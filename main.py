"""Trains a diffusion model as a multi-task learner over timestep clusters, or evaluates one.

  python main.py --config=configs/fashion_mnist.py --workdir=/tmp/fmnist
  python main.py --config=configs/fashion_mnist.py:vanilla --workdir=/tmp/vanilla  # k = 1, equal
  python main.py --mode=sample --config=configs/fashion_mnist.py --workdir=/tmp/fmnist
  python main.py --mode=evaluate --config=configs/fashion_mnist.py --workdir=/tmp/fmnist
  python main.py --mode=ema_sweep --config=configs/fashion_mnist.py --workdir=/tmp/fmnist
  python main.py --mode=tas --config=configs/fashion_mnist.py --workdir=/tmp/fmnist  # tas.npy
  python main.py --mode=ntg --config=configs/fashion_mnist.py --workdir=/tmp/ntg
  python main.py --config=configs/fashion_mnist.py --dry_run --device_memory_gb=16
  JAX_PLATFORMS=cpu python main.py --config=configs/imagenet256_dit.py --dry_run --topology=v5e:2x4
  JAX_PLATFORMS=cpu python main.py --config=configs/ffhq.py --dry_run --topology=h100:8
  python main.py --config=configs/ffhq.py --workdir=gs://bucket/ffhq --multihost  # every host

Mistakes in the config or data end in one line on stderr and exit status 2.
"""

import logging as py_logging

from absl import app, flags, logging
from ml_collections import config_flags

from diffmtl import config_fields
from diffmtl.errors import exit_on_user_error

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and samples.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "sample", "evaluate", "ema_sweep", "tas", "ntg"],
    "train (resuming from the workdir's newest checkpoint); sample / evaluate that checkpoint; "
    "ema_sweep: evaluate it at each post-hoc EMA length of eval.ema_sweep_sigma_rels; "
    "tas: task affinity of the workdir's checkpoints; ntg: negative transfer gap experiment.",
)
flags.DEFINE_bool(
    "dry_run", False, "Compile the training step without data and report memory and FLOPs."
)
flags.DEFINE_float(
    "device_memory_gb", 0.0, "With --dry_run: fail if a device needs more (0: no check)."
)
flags.DEFINE_string(
    "topology",
    "",
    "With --dry_run: compile for this TPU slice or GPU target without it (needs libtpu or jax's "
    "CUDA plugin; run with JAX_PLATFORMS=cpu), e.g. v5e:2x4, v5p:2x2x2, h100:8 (docs/scaling.md).",
)
flags.DEFINE_bool(
    "multihost",
    False,
    "Call jax.distributed.initialize() first: one process per host of a TPU pod or GPU cluster "
    "(coordinator found from the TPU / SLURM / MPI environment unless the flags below give it).",
)
flags.DEFINE_string("coordinator_address", None, "With --multihost: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "With --multihost: number of processes.")
flags.DEFINE_integer("process_id", None, "With --multihost: this process's index.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config"])


class _QuietCheckpointing(py_logging.Filter):
    """Drops orbax's per-save INFO chatter from the console; its warnings still show."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return "/orbax/" not in record.pathname or record.levelno >= py_logging.WARNING


def parse_flags(argv):
    """absl's parsing, but a misspelt or renamed --config.<field> ends in one line naming it and
    the closest fields (exit 2) instead of ml_collections' AttributeError traceback."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError):
        exit_on_user_error(config_fields.check_command_line, argv)
        raise


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_QuietCheckpointing())
    if FLAGS.multihost:
        import jax

        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    from diffmtl import modes  # Imported late: the flags are parsed before JAX starts.

    if FLAGS.dry_run:
        dry_run = (FLAGS.config, FLAGS.device_memory_gb, FLAGS.topology)
        print(exit_on_user_error(modes.dry_run, *dry_run))
        return
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required (except with --dry_run)")
    print(exit_on_user_error(modes.MODES[FLAGS.mode], FLAGS.config, FLAGS.workdir))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
