"""The embedded default: ANT-Nash-MTL (k = 5 log-SNR clusters) training a small ADM UNet on
Fashion-MNIST 28x28, sized for a 2-core CPU. At this learning rate (5e-4, untuned) it leads
vanilla; tuned alike, docs/results.md finds no detectable difference between the two.

`make demo` trains it (its time on our machines: docs/performance.md); the vanilla baseline
(k = 1, equal weights: the plain DDPM loss) is the config's `vanilla` variant; k = 1 alone
keeps Nash-MTL's normalised, clipped gradient and is not vanilla. Override any field on the
command line, e.g.
  python main.py --config=configs/fashion_mnist.py --workdir=/tmp/ant
  python main.py --config=configs/fashion_mnist.py:vanilla --workdir=/tmp/vanilla
  python main.py --config=configs/fashion_mnist.py --workdir=/tmp/uw --config.mtl.method=uw
"""

import ml_collections

from diffmtl import mtl
from diffmtl.data import fashion_mnist as fashion_mnist_data

VARIANTS = ("ant", "vanilla")


def get_config(variant: str = "ant") -> ml_collections.ConfigDict:
    """variant: 'ant' (ANT-Nash-MTL over 5 log-SNR clusters) or 'vanilla' (k = 1, the plain
    DDPM loss; the same model, data, budget and seed)."""
    if variant not in VARIANTS:
        raise ValueError(f"configs/fashion_mnist.py:{variant}: the variants are {VARIANTS}")
    config = ml_collections.ConfigDict()
    config.seed = 0  # Seeds the parameters, the training keys and the data order.

    config.data = ml_collections.ConfigDict()
    # Data source (data/from_config.SOURCES): 'fashion_mnist', 'image_folder', 'tfds', or
    # 'latents': the latent cache (autoencoder.cache_dir) of the pixel source data.pixel_source.
    config.data.name = "fashion_mnist"
    config.data.pixel_source = "fashion_mnist"  # latents: the images the cache encodes.
    # fashion_mnist: its four IDX .gz files (Debian package); image_folder: the image tree;
    # tfds: the TFDS data_dir holding the prepared dataset (a local path or a bucket).
    config.data.dir = fashion_mnist_data.DEFAULT_DIR
    config.data.tfds_name = ""  # tfds: the dataset's name (optionally name/config:version).
    config.data.image_key = "image"  # tfds: the image feature.
    config.data.split = "train"  # 'train' (60000 images) or 'test' (10000).
    config.data.image_size = 28  # Pixels on a side; must match the source.
    config.data.channels = 1  # Image channels; must match the source.
    config.data.random_flip = False  # Mirror half the training images (seeded, resumable).
    # Class labels the model is conditioned on (0: unconditional; Fashion-MNIST has 10, an image
    # folder one per sub-folder of data.dir, sorted by name; TFDS its ClassLabel data.label_key).
    config.data.num_classes = 0
    config.data.label_key = "label"  # tfds: the label feature (with data.num_classes > 0).

    # Latent diffusion (data.name='latents'): a KL autoencoder (autoencoder/kl.py) whose
    # posterior mean and std are cached once per split; training draws z = mean + std * eps.
    config.autoencoder = ml_collections.ConfigDict()
    # Weights: a diffusers diffusion_pytorch_model.safetensors (the SD VAE) or our .npz.
    config.autoencoder.checkpoint = ""
    config.autoencoder.base_channels = 128  # SD KL-f8: 128, (1, 2, 4, 4), 2, 4, 32.
    config.autoencoder.channel_mults = (1, 2, 4, 4)  # Downsampling f = 2^(levels - 1).
    config.autoencoder.num_res_blocks = 2
    config.autoencoder.latent_channels = 4
    config.autoencoder.num_groups = 32  # GroupNorm groups.
    config.autoencoder.input_size = 0  # Images centre-padded to this before encoding (0: none).
    config.autoencoder.scale_factor = 0.18215  # Latents x this enter diffusion (SD's value).
    config.autoencoder.sample_posterior = True  # z = mean + std * eps (False: the mean).
    config.autoencoder.cache_dir = ""  # The latent cache (built on first use if missing).
    config.autoencoder.batch_size = 64  # Global batch of encoding and decoding.

    config.diffusion = ml_collections.ConfigDict()
    config.diffusion.num_timesteps = 1000  # T: tasks t = 0..T-1.
    config.diffusion.schedule = "linear"  # 'linear' (DDPM 1e-4..0.02) or 'cosine'.
    config.diffusion.beta_start = 1e-4  # Linear schedule start (at T = 1000).
    config.diffusion.beta_end = 0.02  # Linear schedule end (at T = 1000).
    config.diffusion.loss_weighting = "none"  # 'none', 'p2' or 'min_snr'.
    config.diffusion.p2_k = 1.0  # P2: 1 / (p2_k + SNR)^p2_gamma.
    config.diffusion.p2_gamma = 1.0  # P2 exponent (the P2 paper uses 0.5 or 1).
    config.diffusion.min_snr_gamma = 5.0  # Min-SNR: min(SNR, gamma) / SNR.
    # Learn the variance too (2C outputs; loss + (T / 1000) L_vlb as improved DDPM; see
    # diffmtl/diffusion/losses.py).
    config.diffusion.learn_sigma = False

    config.clustering = ml_collections.ConfigDict()
    # 'uniform' (k equal-width intervals) or the exact DP with a cost: 'timestep', 'snr',
    # 'log_snr' or 'gradient' (needs tas_path).
    config.clustering.method = "log_snr"
    config.clustering.k = 5  # Number of clusters (tasks); vanilla is k = 1 with mtl.method 'equal'.
    config.clustering.tas_path = ""  # Task-affinity matrix [T, T] (.npy) for 'gradient'.
    # (first, last): train only on timesteps first..last, split uniformly into k clusters (a
    # specialist of the negative transfer gap, --mode=ntg); (): all of 0..T-1.
    config.clustering.timestep_range = ()
    # Multiply cluster i's loss by k |I_i| / T, so that equal weights over clusters of unequal
    # widths give vanilla's objective in expectation (tasks.width_factors). Changes what equal
    # weighting, PCGrad, MGDA, CAGrad, IMTL-G, Aligned-MTL, UPGrad, DualProj, ConFIG and RLW do;
    # Nash-MTL's update, UW at equilibrium, FAMO and DWA are invariant to it (docs/method.md).
    config.clustering.width_weighting = False

    # MTL method over the clusters (docs/mtl.md): 'equal', 'fixed', 'uw', 'continuous_uw',
    # 'famo', 'dwa', 'rlw' (loss-based), 'pcgrad', 'nash_mtl', 'mgda', 'cagrad', 'imtl_g',
    # 'aligned_mtl', 'upgrad', 'dualproj', 'config' (Gram-based). Each method's options are its
    # own section with its defaults, documented in diffmtl/mtl/<method>.py and docs/configs.md:
    # mtl.uw.learning_rate (0.025), mtl.pcgrad.seed, mtl.nash_mtl.update_every (25) and
    # .max_norm (1.0), mtl.cagrad.c (0.4), mtl.fixed.weights / .normalize, ... (Fields renamed
    # from earlier versions: CHANGELOG.md.)
    config.mtl = mtl.default_config()
    config.mtl.method = "nash_mtl"
    # dtype of the per-cluster gradients [k, ...] handed to the method ('float32' or 'bfloat16':
    # half their k x parameter memory; the methods accumulate in float32).
    config.mtl.grad_dtype = "float32"

    config.model = ml_collections.ConfigDict()
    config.model.name = "unet"  # models.MODELS: 'unet' (ADM UNet) or 'toy' (for tests).
    config.model.base_channels = 32  # Channels at the first level.
    config.model.channel_mult = (1, 2, 2)  # Levels at 28, 14, 7 pixels.
    config.model.num_res_blocks = 1  # Residual blocks per level.
    config.model.attention_resolutions = (7,)  # Feature-map sizes with self-attention.
    config.model.num_heads = 4  # Attention heads.
    config.model.num_groups = 8  # GroupNorm groups (must divide base_channels).
    config.model.dropout = 0.1  # Dropout in residual blocks.
    # Label dropout for classifier-free guidance: each label becomes the null label (data.
    # num_classes) with this probability, drawn from the example's key (DiT: 0.1).
    config.model.class_dropout = 0.0
    config.model.variant = "DiT-S/2"  # model.name='dit': DiT-{S,B,L,XL}/{2,4,8} (models/dit.py).
    config.model.attention_implementation = "xla"  # DiT attention: 'xla' or 'cudnn' (GPUs).
    # DiT weights in the official layout (.npz from tools/convert_dit.py) to start from ('': none).
    config.model.init_checkpoint = ""
    # Compute dtype: 'float32' or 'bfloat16' (mixed precision; parameters and Adam stay float32).
    config.model.dtype = "float32"

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 75  # Global batch B = M k N, with N divisible by the devices.
    config.train.num_microbatches = 5  # M: gradient accumulation inside the step.
    config.train.microbatch_loop = "unroll"  # 'unroll' (fast on CPU) or 'scan' (GPU/TPU).
    config.train.num_train_steps = 320  # Steps to train (make demo's time: docs/performance.md).
    config.train.learning_rate = 5e-4  # AdamW peak rate (the paper: 1e-4 at far longer runs).
    config.train.warmup_steps = 50  # Linear warm-up steps (0 = none).
    config.train.adam_b1 = 0.9  # AdamW beta1.
    config.train.adam_b2 = 0.999  # AdamW beta2.
    config.train.adam_eps = 1e-8  # AdamW epsilon.
    config.train.weight_decay = 0.0  # AdamW weight decay (the paper: 0).
    config.train.grad_clip_norm = 1.0  # Clip the combined gradient's global norm (0 = off).
    # > 0: rescale the combined gradient to this global norm instead (a diagnostic of round 2).
    config.train.fixed_grad_norm = 0.0
    config.train.ema_decay = 0.999  # EMA decay cap; warm-up min(cap, (1 + s) / (10 + s)).
    # Post-hoc EMA (docs/evaluation.md): sigma_rel of the power-function EMA profiles tracked
    # beside the EMA above ((): none), and how often both are saved to <workdir>/ema_snapshots
    # (0: never; the last step always) to reconstruct any EMA length after training.
    config.train.ema_profiles = (0.05, 0.10)
    config.train.ema_snapshot_every_steps = 40
    # Steps with a non-finite loss or gradient are skipped; this many in a row stop the run.
    config.train.max_consecutive_skips = 10

    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1  # Data-parallel devices (-1: all that fsdp leaves).
    config.mesh.fsdp = 1  # Parameter-sharding devices (1: replicated parameters).

    config.log_every_steps = 20  # Scalars to TensorBoard and the log.
    # Cosine similarity of the cluster gradients (a live task-affinity view; 0 = off).
    config.task_gradient_cosine_every_steps = 100
    config.checkpoint_every_steps = 200  # Save a checkpoint.
    config.keep_checkpoints = 3  # Checkpoints kept on disk.
    config.sample_every_steps = 0  # Sample grid during training (0: only at the end).
    # Resume (or sample / evaluate) from this checkpoint step instead of the newest (0: the
    # newest); the way past a damaged newest checkpoint without deleting it.
    config.restore_step = 0

    config.sampling = ml_collections.ConfigDict()
    config.sampling.method = "ddim"  # 'ddim' (eta below) or 'ddpm' (ancestral, eta = 1).
    config.sampling.num_steps = 25  # Respaced reverse steps (of T; 25 keeps the demo short).
    config.sampling.eta = 0.0  # DDIM noise scale: 0 deterministic, 1 = ancestral.
    config.sampling.clip_denoised = True  # Clip the predicted x0 to [-1, 1] at each step.
    config.sampling.batch_size = 96  # Global batch, divisible by the devices (small: fast on CPU).
    config.sampling.seed = 0  # Sample i of this seed is the same in every run and batch.
    config.sampling.grid_size = 64  # Images in samples.png.
    # Classifier-free guidance (class-conditional models): eps_u + s (eps_c - eps_u); 1 = none
    # (no unconditional pass). Sample i has label i mod data.num_classes.
    config.sampling.guidance_scale = 1.0
    # Channels of eps guided (0: all). 3 reproduces DiT's guidance of 3 of 4 latent channels.
    config.sampling.guidance_channels = 0

    config.eval = ml_collections.ConfigDict()
    config.eval.every_steps = 0  # FID + validation loss during training (0: only at the end).
    config.eval.num_samples = 480  # Samples per FID (biased upwards at few; ~1 CPU minute).
    # Evaluate at this post-hoc EMA length, reconstructed from the snapshots (0: the EMA of
    # train.ema_decay); --mode=ema_sweep evaluates each of ema_sweep_sigma_rels.
    config.eval.ema_sigma_rel = 0.0
    config.eval.ema_sweep_sigma_rels = (0.03, 0.05, 0.07, 0.1, 0.15, 0.2)
    # 'fmnist_classifier' (FID_FMNIST, committed weights) or 'inception' (FID; needs the file).
    config.eval.feature_network = "fmnist_classifier"
    config.eval.inception_path = ""  # FID Inception weights .npz (README: FID on natural images).
    config.eval.reference_path = ""  # Reference {mu, sigma, features} .npz ('': from the data).
    config.eval.reference_split = "test"  # Held-out split for the reference and validation loss.
    config.eval.num_reference = 10000  # Real images in a reference made from the data.
    config.eval.batch_size = 480  # Feature-network global batch (divisible by the devices).
    config.eval.precision_recall_k = 3  # k of the k-NN manifolds (Kynkaanniemi et al.).
    config.eval.val_num_images = 48  # Held-out images of the validation loss (fixed).
    config.eval.val_num_timesteps = 25  # Its timestep grid, evenly spaced over 0..T-1.

    config.analysis = ml_collections.ConfigDict()
    # Task affinity (--mode=tas): TAS(t1, t2) = cosine of the gradients of L_t1 and L_t2 on the
    # same images and noise, averaged over checkpoints (analysis/task_affinity.py).
    config.analysis.tas_steps = ()  # Checkpoint steps to average over; (): all kept ones.
    config.analysis.tas_num_images = 256  # N training images (a multiple of data devices).
    config.analysis.tas_num_timesteps = 0  # G grid timesteps, interpolated to T x T (0: all T).
    config.analysis.tas_projection_dim = 8192  # d of the count sketch; 0: exact (small grids).
    config.analysis.tas_chunk_size = 4  # Timesteps per backward pass (c x N images at once).
    config.analysis.seed = 0  # Seeds the images, the noise and the projection.
    # Negative transfer gap (--mode=ntg): specialists on equal intervals (negative_transfer.py).
    config.analysis.ntg_num_intervals = 5  # Equal timestep intervals, one specialist each.
    config.analysis.ntg_num_samples = 2000  # Samples per FID.
    config.analysis.ntg_sampling_steps = 50  # DDIM steps (eta 0) of the NTG samples.
    if variant == "vanilla":  # One task: the MTL method has nothing to weigh.
        config.clustering.k, config.clustering.method, config.mtl.method = 1, "uniform", "equal"
    return config
