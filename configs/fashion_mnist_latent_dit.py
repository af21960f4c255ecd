"""A class-conditional latent DiT on Fashion-MNIST: Table 2's setting at CPU scale.

configs/fashion_mnist_dit.py on the 8x8x4 latents of the committed Fashion-MNIST autoencoder
(diffmtl/autoencoder/pretrained.py: 28x28 images centre-padded to 32, KL-f4) instead of pixels:
a DiT-Ti/2 sees 16 tokens where the pixel DiT-Ti/4 sees 49. The latent cache is built on first
use (about a minute here) in autoencoder.cache_dir; samples are decoded before FID_FMNIST.

  python main.py --config=configs/fashion_mnist_latent_dit.py --workdir=/tmp/fmnist_ldit
"""

import ml_collections

from configs import fashion_mnist_dit
from diffmtl.autoencoder import pretrained


def get_config() -> ml_collections.ConfigDict:
    config = fashion_mnist_dit.get_config()
    config.data.name = "latents"
    config.data.pixel_source = "fashion_mnist"
    pretrained.use_fmnist_autoencoder(config)  # sizes, weights and scale factor
    config.autoencoder.cache_dir = "workdirs/latent_cache/fashion_mnist_kl_f4"
    config.autoencoder.batch_size = 500  # Encoding / decoding batch (whole-split passes).

    config.model.variant = "DiT-Ti/2"  # 16 tokens of 2x2x4 latents.
    config.sampling.clip_denoised = False  # Latents are not bounded to [-1, 1].
    return config
