"""ANT on FFHQ 256x256 with a latent diffusion model: the paper's LDM-FFHQ row (Table 1).

configs/ffhq.py (data, evaluation, assumptions) with the UNet on the 32x32x4 latents of the
Stable Diffusion KL-f8 autoencoder. ASSUMPTION: LDM's FFHQ model used a VQ-f4 first stage
(64x64x3); no VQ weights in a format we can read without torch are published, while the SD VAE
(stabilityai/sd-vae-ft-ema) is, and it is the autoencoder of the paper's DiT setting too. The
UNet follows LDM's FFHQ config (224 channels, multipliers (1, 2, 3, 4), 2 blocks, attention at
the 3 finer latent levels, 32-channel heads as 7 heads of 32 at the first level) and LDM's
scaled-linear schedule 0.0015 .. 0.0195; 400K steps (the paper). Paper, Table 1: PCGrad over
gradient clusters, which need a TAS file of a vanilla run first (--mode=tas, README).

  python -m diffmtl.autoencoder.encode_latents --config=configs/ffhq_ldm.py   # once
  python main.py --config=configs/ffhq_ldm.py --workdir=gs://bucket/ffhq_ldm \
      --config.clustering.tas_path=gs://bucket/ffhq_ldm_vanilla/tas.npy
"""

import ml_collections

from configs import ffhq


def get_config() -> ml_collections.ConfigDict:
    config = ffhq.get_config()
    config.data.pixel_source = config.data.name  # The FFHQ images of configs/ffhq.py.
    config.data.name = "latents"

    ae = config.autoencoder  # The SD VAE: the defaults of configs/fashion_mnist.py.
    ae.checkpoint = "/data/sd-vae-ft-ema/diffusion_pytorch_model.safetensors"  # Set: local copy.
    ae.cache_dir = "/data/latents/ffhq_sd_vae"  # ~2.3 GB (70k x 2 flips x mean and std).
    ae.batch_size = 64

    diffusion = config.diffusion
    diffusion.schedule = "scaled_linear"  # LDM's "linear": sqrt(beta) evenly spaced.
    diffusion.beta_start = 0.0015  # LDM.
    diffusion.beta_end = 0.0195  # LDM.
    diffusion.learn_sigma = False  # LDM predicts eps only.

    config.clustering.method = "gradient"  # Paper, Table 1: gradient clusters (set tas_path).
    config.clustering.tas_path = "/data/ffhq_ldm_vanilla/tas.npy"  # Set: --mode=tas of vanilla.
    config.mtl.method = "pcgrad"  # Paper, Table 1.

    model = config.model  # LDM's FFHQ UNet, on 32x32x4 latents.
    model.base_channels = 224
    model.channel_mult = (1, 2, 3, 4)  # 32, 16, 8, 4 latent pixels.
    model.num_res_blocks = 2
    model.attention_resolutions = (32, 16, 8)  # LDM: attention at downsampling 1, 2, 4 (of 8).
    model.num_heads = 7  # 32-channel heads at the first level (LDM: num_head_channels 32).
    model.dropout = 0.0

    train = config.train
    train.num_train_steps = 400_000  # The paper: LDM on FFHQ 400K iterations.
    train.batch_size = 40  # ASSUMPTION as configs/ffhq.py (LDM used 42 on one GPU).

    sampling = config.sampling
    sampling.method = "ddim"  # LDM's FID: DDIM 200 steps, eta 0.
    sampling.num_steps = 200
    sampling.eta = 0.0
    sampling.clip_denoised = False  # Latents are not bounded to [-1, 1].
    return config
