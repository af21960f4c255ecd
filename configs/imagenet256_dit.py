"""ANT on ImageNet 256 with DiT: the authors' own setting (docs/dit.md; the paper's Table 2).

Class-conditional DiT on the 32x32x4 latents of the Stable Diffusion KL-f8 VAE, learned variance,
classifier-free guidance. A variant of the shared default (configs/fashion_mnist.py): every
field not set here keeps its default and comment there. Fields marked ASSUMPTION are not in the
paper or the authors' release. DiT-L/2 is the default (Table 2); others by override:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python main.py --config=configs/imagenet256_dit.py --dry_run --config.model.variant=DiT-XL/2

End to end (README: ImageNet): the train folder (one sub-folder per class) is centre-cropped
to 256 px, encoded once by the SD VAE into the latent cache (both flips, as fast-DiT), the DiT
trains on z = 0.18215 (mean + std eps), and samples are decoded before FID:

  python -m diffmtl.autoencoder.encode_latents --config=configs/imagenet256_dit.py
  python main.py --config=configs/imagenet256_dit.py --workdir=gs://bucket/dit_l2 \
      --config.eval.inception_path=pt_inception.npz
"""

import ml_collections

from configs import fashion_mnist


def get_config() -> ml_collections.ConfigDict:
    config = fashion_mnist.get_config()

    data = config.data
    data.name = "latents"  # The latent cache of the pixel source below.
    data.pixel_source = "image_folder"
    data.dir = "/data/imagenet/train"  # One sub-folder per class (ImageNet's train layout).
    data.image_size = 256  # Pixels (ADM's centre crop); latents are 32x32x4 (KL-f8).
    data.channels = 3
    data.num_classes = 1000
    data.random_flip = True  # DiT: random horizontal flips (the cache holds both).

    ae = config.autoencoder  # The SD VAE: the defaults of configs/fashion_mnist.py.
    ae.checkpoint = "/data/sd-vae-ft-ema/diffusion_pytorch_model.safetensors"  # Set: local copy.
    ae.cache_dir = "/data/latents/imagenet256_sd_vae"  # ~84 GB (1.28M x 2 flips, mean and std).
    ae.batch_size = 256

    diffusion = config.diffusion
    diffusion.num_timesteps = 1000  # DiT / paper.
    diffusion.schedule = "linear"  # DiT: linear 1e-4 .. 0.02.
    diffusion.learn_sigma = True  # DiT learns the variance (L_simple + L_vlb).

    config.clustering.method = "uniform"  # The authors' code trains on uniform clusters only.
    config.clustering.k = 5  # Paper.
    config.mtl.method = "uw"  # Paper, Table 2: ANT-UW.

    model = config.model
    model.name = "dit"
    model.variant = "DiT-L/2"  # Paper, Table 2 (DiT-S/2 in the authors' README).
    model.dropout = 0.0  # DiT has no dropout.
    model.class_dropout = 0.1  # DiT: label dropout for classifier-free guidance.
    model.dtype = "float32"  # DiT trains in float32; 'bfloat16' for mixed precision.
    model.attention_implementation = "xla"  # 'cudnn': flash attention on NVIDIA GPUs.

    train = config.train
    train.batch_size = 240  # The paper: ~256 for DiT-L/2; 240 = 5 clusters x 48 (8 | 48).
    train.num_microbatches = 1
    train.microbatch_loop = "scan"  # Constant compile time on accelerators.
    train.num_train_steps = 400_000  # Paper: DiT-L/2 for 400K iterations.
    train.learning_rate = 1e-4  # DiT / paper, constant.
    train.warmup_steps = 0
    train.weight_decay = 0.0  # DiT / paper.
    train.grad_clip_norm = 0.0  # DiT does not clip.
    train.ema_decay = 0.9999  # DiT / paper.

    config.log_every_steps = 100
    config.task_gradient_cosine_every_steps = 5000
    config.checkpoint_every_steps = 10_000
    config.keep_checkpoints = 3

    sampling = config.sampling
    sampling.method = "ddpm"  # DiT: ancestral sampling with the learned variance,
    sampling.num_steps = 250  # 250 respaced steps.
    sampling.clip_denoised = False  # Latents are not bounded to [-1, 1] (DiT does not clip).
    sampling.guidance_scale = 1.5  # DiT's FID-50K setting.
    sampling.guidance_channels = 3  # DiT's (and the authors') quirk: 3 of 4 latent channels.
    sampling.batch_size = 64
    sampling.grid_size = 64

    evaluation = config.eval
    evaluation.every_steps = 0
    evaluation.num_samples = 50_000  # ADM evaluator's 50k samples.
    evaluation.feature_network = "inception"
    evaluation.inception_path = ""  # Set: the converted weights (README: FID on natural images).
    evaluation.reference_split = "train"
    evaluation.num_reference = 50_000  # ASSUMPTION: ADM's reference batch is 10k+; see README.
    evaluation.batch_size = 200
    evaluation.val_num_images = 64
    evaluation.val_num_timesteps = 50
    return config
