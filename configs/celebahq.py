"""ANT on CelebA-HQ 256x256 with ADM: the FFHQ setting (configs/ffhq.py) on CelebA-HQ.

Only the data and the paper's best ADM-CelebA-HQ variant (Table 1: uncertainty weighting over
timestep clusters) differ from configs/ffhq.py; see its comments for every assumption.

  python main.py --config=configs/celebahq.py --workdir=gs://bucket/celebahq \
      --config.data.dir=/data/celeba_hq/images --config.eval.inception_path=pt_inception.npz
"""

import ml_collections

from configs import ffhq


def get_config() -> ml_collections.ConfigDict:
    config = ffhq.get_config()
    config.data.dir = "/data/celeba_hq/images"  # The 30000 CelebA-HQ images (README).
    config.clustering.method = "timestep"  # Paper, Table 1: UW with timestep clusters.
    config.mtl.method = "uw"
    config.eval.num_reference = 30_000  # Every CelebA-HQ image.
    return config
