"""`diffmtl.train.train_and_evaluate(config, workdir)`, the entry point README and notebooks
call; it lives in diffmtl/training/loop.py."""

from diffmtl.training.loop import train_and_evaluate

__all__ = ["train_and_evaluate"]
