"""validate(config, num_devices): every check that can fail before anything is built or compiled.

Each failure raises UserError with one line naming the field, what it holds and what is allowed.
"""

from __future__ import annotations

from etils import epath

from diffmtl import autoencoder, models, mtl
from diffmtl.clustering import from_config
from diffmtl.data import from_config as data_from_config
from diffmtl.diffusion import schedule
from diffmtl.diffusion.samplers import SAMPLERS
from diffmtl.errors import UserError, require, require_one_of
from diffmtl.evaluation.metrics import inception
from diffmtl.evaluation.metrics.features import NETWORKS
from diffmtl.models import dit
from diffmtl.training import post_hoc_ema


def nearest_valid_batch_sizes(batch_size: int, multiple: int) -> list[int]:
    """The multiples of `multiple` just below (if positive) and just above `batch_size`."""
    below = (batch_size // multiple) * multiple
    return [s for s in (below, below + multiple) if s > 0]


# Fields no range can check, each with where it is checked instead (tests/test_config_validation
# fails for a config field that is neither checked here nor listed).
FREE_FIELDS = {
    "data.dir": "a path: the source reports a missing or unreadable one when opened",
    "data.split": "the source's split names: checked when the source is opened",
    "data.tfds_name": "a TFDS dataset name: checked when the dataset is opened",
    "data.image_key": "a TFDS feature name: checked when the dataset is opened",
    "data.label_key": "a TFDS feature name: checked when the dataset is opened",
    "clustering.tas_path": "a file: checked when clustering.method='gradient' reads it",
    "autoencoder.checkpoint": "a weights file: checked (format, keys) when latents are used",
    "autoencoder.cache_dir": "a directory: created, or checked against its meta.json",
    "eval.inception_path": "a weights file: checked unless a dry run",
    "eval.reference_path": "a reference file: checked unless a dry run ('' makes one)",
    "eval.reference_split": "the source's split names: checked when the source is opened",
    "mesh.data": "-1 (all devices fsdp leaves) or a count: checked with mesh.fsdp",
    "model.init_checkpoint": "a weights file: checked (format, keys) when the DiT is built",
}


def _check_counts_and_seeds(config) -> None:
    """Seeds and counts of every section, whether or not the run uses them."""
    for field in ("seed", "restore_step", "sampling.seed", "analysis.seed"):
        section, _, name = field.rpartition(".")
        value = config[section][name] if section else config[name]
        require(isinstance(value, int) and value >= 0, f"{field}={value!r} must be an integer >= 0")
    steps = tuple(config.analysis.tas_steps)
    require(
        all(isinstance(s, int) and s >= 0 for s in steps),
        f"analysis.tas_steps={steps} must be checkpoint steps (integers >= 0), or () for all",
    )
    sources = tuple(data_from_config.SOURCES)
    require_one_of(config.data.name, sources + ("latents",), "data.name")
    require_one_of(config.data.pixel_source, sources, "data.pixel_source")
    autoencoder.check_sizes(config)
    model = config.model
    for field in ("base_channels", "num_res_blocks", "num_heads", "num_groups"):
        require(model[field] >= 1, f"model.{field}={model[field]} must be >= 1")
    mults = tuple(model.channel_mult)
    require(
        len(mults) >= 1 and all(isinstance(m, int) and m >= 1 for m in mults),
        f"model.channel_mult={mults} must be positive integers",
    )
    require(
        all(isinstance(r, int) and r >= 1 for r in tuple(model.attention_resolutions)),
        f"model.attention_resolutions={tuple(model.attention_resolutions)} must be positive "
        "integers (pixels on a side)",
    )
    require_one_of(
        model.attention_implementation, ("xla", "cudnn"), "model.attention_implementation"
    )
    try:
        dit.parse_variant(model.variant)
    except ValueError as e:
        raise UserError(str(e)) from e


def _check_diffusion(cfg) -> None:
    require_one_of(cfg.schedule, schedule.SCHEDULES, "diffusion.schedule")
    require(cfg.num_timesteps >= 1, f"diffusion.num_timesteps={cfg.num_timesteps} must be >= 1")
    require(cfg.p2_gamma >= 0, f"diffusion.p2_gamma={cfg.p2_gamma} must be >= 0")
    if cfg.schedule != "cosine":
        require(
            0 < cfg.beta_start < cfg.beta_end < 1,
            f"diffusion.beta_start={cfg.beta_start} and diffusion.beta_end={cfg.beta_end} must "
            "satisfy 0 < beta_start < beta_end < 1 (DDPM: 1e-4 and 0.02)",
        )
    if cfg.schedule == "linear":  # ADM scales both ends by 1000 / T
        scaled = cfg.beta_end * 1000 / max(cfg.num_timesteps, 1)
        require(
            scaled < 1,
            f"diffusion.beta_end={cfg.beta_end} x 1000 / num_timesteps={cfg.num_timesteps} = "
            f"{scaled:g} must be < 1: raise num_timesteps or lower beta_end",
        )
    require_one_of(cfg.loss_weighting, schedule.LOSS_WEIGHTINGS, "diffusion.loss_weighting")
    require(cfg.num_timesteps >= 1, f"diffusion.num_timesteps={cfg.num_timesteps} must be >= 1")
    require(cfg.p2_k > 0, f"diffusion.p2_k={cfg.p2_k} must be > 0 (P2 weight 1/(p2_k+SNR)^gamma)")
    require(cfg.min_snr_gamma > 0, f"diffusion.min_snr_gamma={cfg.min_snr_gamma} must be > 0")
    require_one_of(cfg.learn_sigma, (False, True), "diffusion.learn_sigma")


def _check_clustering(config) -> None:
    cfg, num_timesteps = config.clustering, config.diffusion.num_timesteps
    require_one_of(cfg.method, from_config.METHODS, "clustering.method")
    require_one_of(cfg.width_weighting, (False, True), "clustering.width_weighting")
    require(
        1 <= cfg.k <= num_timesteps,
        f"clustering.k={cfg.k} must be between 1 and diffusion.num_timesteps={num_timesteps}",
    )
    require(
        cfg.method != "gradient" or bool(cfg.tas_path),
        "clustering.method='gradient' needs clustering.tas_path (a T x T task-affinity .npy file)",
    )
    if cfg.timestep_range:
        first, last = (tuple(cfg.timestep_range) + (None, None))[:2]
        require(
            len(cfg.timestep_range) == 2 and 0 <= first <= last < num_timesteps,
            f"clustering.timestep_range={tuple(cfg.timestep_range)} must be (first, last) with "
            f"0 <= first <= last < diffusion.num_timesteps={num_timesteps}, or () for all",
        )
        require(
            cfg.method == "uniform" and last - first + 1 >= cfg.k,
            f"clustering.timestep_range={tuple(cfg.timestep_range)} needs clustering.method="
            f"'uniform' and at least clustering.k={cfg.k} timesteps",
        )
    require_one_of(config.mtl.method, sorted(mtl.METHODS), "mtl.method")
    require_one_of(config.mtl.grad_dtype, ("float32", "bfloat16"), "mtl.grad_dtype")
    require_one_of(config.mtl.normalize_weights, (False, True), "mtl.normalize_weights")
    require(
        not config.mtl.normalize_weights or mtl.METHODS[config.mtl.method].kind == "loss",
        f"mtl.normalize_weights=True needs a loss-based mtl.method (uw, famo, dwa, rlw, ...), "
        f"not {config.mtl.method!r}, which combines per-cluster gradients",
    )
    mtl.check_config(config.mtl)
    weights = tuple(config.mtl.fixed.weights)
    require(
        config.mtl.method != "fixed" or len(weights) in (0, config.clustering.k),
        f"mtl.fixed.weights={weights} must hold clustering.k={config.clustering.k} weights, "
        "one per cluster (or be () for equal weights)",
    )


def example_shape(config) -> tuple[int, int, int]:
    """(H, W, C) of the model-space examples: the pixels, or the latents with data.name =
    'latents'."""
    if config.data.name == "latents":
        return autoencoder.latent_shape(config)
    return (config.data.image_size, config.data.image_size, config.data.channels)


# Sources whose images have one size: (image_size, channels), checked before the model is.
FIXED_IMAGE_SHAPES = {"fashion_mnist": (28, 1)}


def _check_model(config) -> None:
    require(config.data.channels >= 1, f"data.channels={config.data.channels} must be >= 1")
    require(config.data.image_size >= 1, f"data.image_size={config.data.image_size} must be >= 1")
    source = config.data.pixel_source if config.data.name == "latents" else config.data.name
    if source in FIXED_IMAGE_SHAPES:
        size, channels = FIXED_IMAGE_SHAPES[source]
        require(
            (config.data.image_size, config.data.channels) == (size, channels),
            f"data.image_size={config.data.image_size} and data.channels={config.data.channels}"
            f" but {source} images are {size}x{size}x{channels}: set "
            f"--config.data.image_size={size} --config.data.channels={channels}",
        )
    if config.data.name == "latents":
        autoencoder.check_config(config)
    models.check_model_config(config, example_shape(config))


def _check_train(config, num_devices: int) -> None:
    cfg, k = config.train, config.clustering.k
    require(cfg.learning_rate > 0, f"train.learning_rate={cfg.learning_rate} must be > 0")
    require(cfg.warmup_steps >= 0, f"train.warmup_steps={cfg.warmup_steps} must be >= 0 (0: none)")
    require(cfg.weight_decay >= 0, f"train.weight_decay={cfg.weight_decay} must be >= 0")
    require(cfg.grad_clip_norm >= 0, f"train.grad_clip_norm={cfg.grad_clip_norm} must be >= 0")
    require(
        cfg.fixed_grad_norm >= 0,
        f"train.fixed_grad_norm={cfg.fixed_grad_norm} must be >= 0 (0: off)",
    )
    for field in ("adam_b1", "adam_b2"):
        require(0 <= cfg[field] < 1, f"train.{field}={cfg[field]} must be in [0, 1)")
    require(cfg.adam_eps > 0, f"train.adam_eps={cfg.adam_eps} must be > 0")
    require(cfg.num_train_steps >= 1, f"train.num_train_steps={cfg.num_train_steps} must be >= 1")
    require(
        cfg.num_microbatches >= 1, f"train.num_microbatches={cfg.num_microbatches} must be >= 1"
    )
    require_one_of(cfg.microbatch_loop, ("unroll", "scan"), "train.microbatch_loop")
    require(0 <= cfg.ema_decay < 1, f"train.ema_decay={cfg.ema_decay} must be in [0, 1)")
    _check_sigma_rels(tuple(cfg.ema_profiles), "train.ema_profiles")
    require(
        isinstance(cfg.ema_snapshot_every_steps, int) and cfg.ema_snapshot_every_steps >= 0,
        f"train.ema_snapshot_every_steps={cfg.ema_snapshot_every_steps} must be >= 0 (0: only "
        "the last step)",
    )
    require(
        cfg.max_consecutive_skips >= 1,
        f"train.max_consecutive_skips={cfg.max_consecutive_skips} must be >= 1",
    )
    multiple = cfg.num_microbatches * k * num_devices
    require(
        cfg.batch_size >= 1,
        f"train.batch_size={cfg.batch_size} must be a positive multiple of num_microbatches x k "
        f"x devices = {multiple}, e.g. {multiple}",
    )
    require(
        cfg.batch_size % multiple == 0,
        f"train.batch_size={cfg.batch_size} is not divisible by num_microbatches x k x devices = "
        f"{cfg.num_microbatches} x {k} x {num_devices} = {multiple}; nearest valid sizes: "
        f"{nearest_valid_batch_sizes(cfg.batch_size, multiple)}",
    )


def _check_mesh(config, num_devices: int) -> None:
    data, fsdp = config.mesh.data, config.mesh.fsdp
    require(
        fsdp >= 1 and num_devices % fsdp == 0, f"mesh.fsdp={fsdp} must divide {num_devices} devices"
    )
    require(
        data == -1 or data * fsdp == num_devices,
        f"mesh.data x mesh.fsdp = {data} x {fsdp} must equal the {num_devices} devices "
        "(or set mesh.data=-1)",
    )


def _divisible_by_devices(value: int, field: str, num_devices: int) -> None:
    require(
        value >= 1 and value % num_devices == 0,
        f"{field}={value} must be a positive multiple of the {num_devices} devices",
    )


def _check_sampling(config, num_devices: int) -> None:
    cfg = config.sampling
    require_one_of(cfg.method, SAMPLERS, "sampling.method")
    require(
        1 <= cfg.num_steps <= config.diffusion.num_timesteps,
        f"sampling.num_steps={cfg.num_steps} must be between 1 and diffusion.num_timesteps",
    )
    require(cfg.eta >= 0, f"sampling.eta={cfg.eta} must be >= 0")
    _divisible_by_devices(cfg.batch_size, "sampling.batch_size", num_devices)
    require(cfg.grid_size >= 1, f"sampling.grid_size={cfg.grid_size} must be >= 1")
    require(
        cfg.guidance_scale == 1.0 or config.data.num_classes > 0,
        f"sampling.guidance_scale={cfg.guidance_scale} needs class labels: set data.num_classes "
        "(and model.class_dropout > 0 to train the unconditional model) or the scale to 1",
    )
    require(cfg.guidance_scale >= 0, f"sampling.guidance_scale={cfg.guidance_scale} must be >= 0")
    channels = example_shape(config)[-1]
    require(
        0 <= cfg.guidance_channels <= channels,
        f"sampling.guidance_channels={cfg.guidance_channels} must be between 0 (all) and the "
        f"model's {channels} channels",
    )


def _check_sigma_rels(values: tuple, field: str, extra: str = "") -> None:
    """Post-hoc EMA lengths: numbers in (0, post_hoc_ema.MAX_SIGMA_REL]."""
    top = post_hoc_ema.MAX_SIGMA_REL
    require(
        all(isinstance(v, int | float) and 0 < v <= top for v in values),
        f"{field}={values} must be sigma_rel values in (0, {top}] {extra}".strip(),
    )


def _check_eval(config, num_devices: int, check_files: bool) -> None:
    cfg = config.eval
    require(cfg.every_steps >= 0, "eval.every_steps must be >= 0 (0: only at the end)")
    require(cfg.num_samples >= 2, f"eval.num_samples={cfg.num_samples} must be >= 2")
    require_one_of(cfg.feature_network, NETWORKS, "eval.feature_network")
    shape = (config.data.image_size, config.data.channels)
    require(
        cfg.feature_network != "fmnist_classifier" or shape == (28, 1),
        f"eval.feature_network='fmnist_classifier' reads 28x28x1 images, not {shape[0]}x"
        f"{shape[0]}x{shape[1]}: use eval.feature_network='inception' (with eval.inception_path)",
    )
    if check_files and cfg.feature_network == "inception":
        require(
            bool(cfg.inception_path) and epath.Path(cfg.inception_path).is_file(),
            f"eval.inception_path={cfg.inception_path!r} is not a file: convert "
            f"{inception.FILE_NAME} (README: FID on natural images) and point it there",
        )
    if check_files and cfg.reference_path:
        require(
            epath.Path(cfg.reference_path).is_file(),
            f"eval.reference_path={cfg.reference_path!r} is not a file: make one with "
            "`python -m diffmtl.evaluation.metrics.reference` or set it to '' (computed from the "
            "data)",
        )
    require(cfg.num_reference >= 2, f"eval.num_reference={cfg.num_reference} must be >= 2")
    if cfg.ema_sigma_rel != 0:
        _check_sigma_rels((cfg.ema_sigma_rel,), "eval.ema_sigma_rel", "or 0 (the classic EMA)")
    _check_sigma_rels(tuple(cfg.ema_sweep_sigma_rels), "eval.ema_sweep_sigma_rels")
    _divisible_by_devices(cfg.batch_size, "eval.batch_size", num_devices)
    require(cfg.precision_recall_k >= 1, "eval.precision_recall_k must be >= 1")
    _divisible_by_devices(cfg.val_num_images, "eval.val_num_images", num_devices)
    require(
        1 <= cfg.val_num_timesteps <= config.diffusion.num_timesteps,
        "eval.val_num_timesteps must be between 1 and diffusion.num_timesteps",
    )


def _check_analysis(config) -> None:
    cfg, num_timesteps = config.analysis, config.diffusion.num_timesteps
    require(cfg.tas_num_images >= 1, "analysis.tas_num_images must be >= 1")
    require(
        cfg.tas_num_timesteps == 0 or 2 <= cfg.tas_num_timesteps <= num_timesteps,
        f"analysis.tas_num_timesteps={cfg.tas_num_timesteps} must be 0 (all T) or 2..T",
    )
    require(cfg.tas_projection_dim >= 0, "analysis.tas_projection_dim must be >= 0 (0: exact)")
    require(cfg.tas_chunk_size >= 1, "analysis.tas_chunk_size must be >= 1")
    require(
        1 <= cfg.ntg_num_intervals <= num_timesteps // config.clustering.k,
        f"analysis.ntg_num_intervals={cfg.ntg_num_intervals} must be between 1 and T / k = "
        f"{num_timesteps // config.clustering.k} (each specialist splits its interval into k)",
    )
    require(cfg.ntg_num_samples >= 2, "analysis.ntg_num_samples must be >= 2")
    require(
        1 <= cfg.ntg_sampling_steps <= num_timesteps,
        "analysis.ntg_sampling_steps must be between 1 and diffusion.num_timesteps",
    )


def validate(config, num_devices: int, check_files: bool = True) -> None:
    """Raises UserError naming the first invalid field of `config` for `num_devices` devices.

    check_files=False skips the evaluation files (a dry run compiles the step without them).
    """
    _check_counts_and_seeds(config)
    _check_diffusion(config.diffusion)
    _check_clustering(config)
    _check_model(config)
    _check_mesh(config, num_devices)
    _check_train(config, num_devices)
    _check_sampling(config, num_devices)
    _check_eval(config, num_devices, check_files)
    _check_analysis(config)
    for field in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
        require(config[field] >= 1, f"{field}={config[field]} must be >= 1")
    require(config.sample_every_steps >= 0, "sample_every_steps must be >= 0 (0: only at the end)")
    require(
        config.task_gradient_cosine_every_steps >= 0,
        "task_gradient_cosine_every_steps must be >= 0 (0: off)",
    )
