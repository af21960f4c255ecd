"""The tests' tiny config: configs/fashion_mnist.py shrunk to compile and run in seconds on CPU.

  python main.py --config=tests/tiny_config.py --workdir=W            # the toy denoiser
  python main.py --config=tests/tiny_config.py:unet --workdir=W       # a 2-level UNet
Tests take it through conftest.make_tiny_config(); subprocess tests pass overrides as
--config.<field>=<value> flags.
"""

import ml_collections

from configs import fashion_mnist


def get_config(model: str = "toy") -> ml_collections.ConfigDict:
    """model: 'toy' (three convolutions: step, MTL, resume and pipeline properties that do not
    depend on the architecture) or 'unet' (base 8, two levels, attention at 14 px)."""
    config = fashion_mnist.get_config()
    # The stratified batch with equal weights: the step properties most tests check hold for it
    # exactly (the default's Nash-MTL is pinned where a test needs it).
    config.clustering.method = "uniform"
    config.mtl.method = "equal"
    config.model.name = model
    config.model.base_channels = 8
    config.model.num_groups = 4
    config.model.channel_mult = (1, 2)
    config.model.num_res_blocks = 1
    config.model.attention_resolutions = (14,)
    config.model.num_heads = 2
    config.train.batch_size = 40
    config.train.num_microbatches = 1
    config.train.num_train_steps = 4
    config.train.warmup_steps = 0
    config.train.learning_rate = 1e-3
    config.log_every_steps = 2
    config.checkpoint_every_steps = 2
    config.sampling.num_steps = 3
    config.sampling.batch_size = 8
    config.sampling.grid_size = 8
    config.eval.num_samples = 8
    config.eval.num_reference = 64
    config.eval.batch_size = 32
    config.eval.val_num_images = 8
    config.eval.val_num_timesteps = 10  # at least one grid point in each of the 5 clusters
    return config
