"""Training: experiment building, the jitted steps, TrainState, optimizer, checkpoints, resume,
dry run. `train_and_evaluate(config, workdir)` is the entry point (loop.py)."""

from diffmtl.training.loop import train_and_evaluate

__all__ = ["train_and_evaluate"]
