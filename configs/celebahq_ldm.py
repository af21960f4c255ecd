"""ANT on CelebA-HQ 256x256 with a latent diffusion model: the paper's LDM-CelebA-HQ row.

configs/ffhq_ldm.py (every assumption there) on CelebA-HQ, with the paper's best variant for
this row (Table 1: uncertainty weighting over SNR clusters, log-SNR as configs/ffhq.py).

  python -m diffmtl.autoencoder.encode_latents --config=configs/celebahq_ldm.py   # once
  python main.py --config=configs/celebahq_ldm.py --workdir=gs://bucket/celebahq_ldm
"""

import ml_collections

from configs import ffhq_ldm


def get_config() -> ml_collections.ConfigDict:
    config = ffhq_ldm.get_config()
    config.data.dir = "/data/celeba_hq/images"  # The 30000 CelebA-HQ images (README).
    config.autoencoder.cache_dir = "/data/latents/celebahq_sd_vae"
    config.clustering.method = "log_snr"  # Paper, Table 1: UW over SNR clusters.
    config.clustering.tas_path = ""
    config.mtl.method = "uw"
    config.eval.num_reference = 30_000  # Every CelebA-HQ image.
    return config
