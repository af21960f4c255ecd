"""A class-conditional pixel DiT on Fashion-MNIST, sized for this CPU, sampled with guidance.

The default config (configs/fashion_mnist.py) with a small DiT on 7x7 patches of 4x4 pixels,
the 10 classes as labels, label dropout 0.1 and classifier-free guidance 2.0 at sampling time:

  python main.py --config=configs/fashion_mnist_dit.py --workdir=/tmp/fmnist_dit
"""

import ml_collections

from configs import fashion_mnist


def get_config() -> ml_collections.ConfigDict:
    config = fashion_mnist.get_config()
    config.data.num_classes = 10  # The ten Fashion-MNIST classes.
    config.clustering.method = "log_snr"  # As the default (uniform ties it: docs/results.md).
    config.mtl.method = "nash_mtl"

    model = config.model
    model.name = "dit"
    model.variant = "DiT-Ti/4"  # 192 wide, 12 blocks, 3 heads; 49 tokens of 4x4 pixels.
    model.dropout = 0.0  # DiT has no dropout.
    model.class_dropout = 0.1  # DiT's label dropout (classifier-free guidance).

    config.train.learning_rate = 1e-3  # 3e-4 gave blocky samples after 320 steps (docs/dit.md).
    config.train.num_train_steps = 600  # Its step time: docs/dit.md.
    config.sampling.guidance_scale = 2.0  # ASSUMPTION: a CPU-scale model profits from more.
    config.sampling.grid_size = 60  # 6 samples of each class, one row per class.
    return config
