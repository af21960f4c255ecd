"""validate(config, num_devices): every check that can fail before anything is built or compiled.

Each failure raises UserError with one line naming the field, what it holds and what is allowed.
"""

from __future__ import annotations

from diffmtl import diffusion, mtl
from diffmtl.clustering import from_config
from diffmtl.errors import UserError


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _one_of(value, allowed, field: str) -> None:
    _require(value in allowed, f"{field}={value!r} is unknown; use one of {list(allowed)}")


def nearest_valid_batch_sizes(batch_size: int, multiple: int) -> list[int]:
    """The multiples of `multiple` just below (if positive) and just above `batch_size`."""
    below = (batch_size // multiple) * multiple
    return [s for s in (below, below + multiple) if s > 0]


def _check_diffusion(cfg) -> None:
    _one_of(cfg.schedule, diffusion.SCHEDULES, "diffusion.schedule")
    _one_of(cfg.loss_weighting, diffusion.LOSS_WEIGHTINGS, "diffusion.loss_weighting")
    _require(cfg.num_timesteps >= 1, f"diffusion.num_timesteps={cfg.num_timesteps} must be >= 1")
    _require(cfg.p2_k > 0, f"diffusion.p2_k={cfg.p2_k} must be > 0 (P2 weight 1/(p2_k+SNR)^gamma)")
    _require(cfg.min_snr_gamma > 0, f"diffusion.min_snr_gamma={cfg.min_snr_gamma} must be > 0")


def _check_clustering(config) -> None:
    cfg, num_timesteps = config.clustering, config.diffusion.num_timesteps
    _one_of(cfg.method, from_config.METHODS, "clustering.method")
    _require(
        1 <= cfg.k <= num_timesteps,
        f"clustering.k={cfg.k} must be between 1 and diffusion.num_timesteps={num_timesteps}",
    )
    _require(
        cfg.method != "gradient" or bool(cfg.tas_path),
        "clustering.method='gradient' needs clustering.tas_path (a T x T task-affinity .npy file)",
    )
    _one_of(config.mtl.method, sorted(mtl.METHODS), "mtl.method")
    _one_of(config.mtl.grad_dtype, ("float32", "bfloat16"), "mtl.grad_dtype")
    _require(
        config.mtl.nash_update_every >= 1,
        f"mtl.nash_update_every={config.mtl.nash_update_every} must be >= 1",
    )


def _check_model(config) -> None:
    cfg, size = config.model, config.data.image_size
    _one_of(cfg.name, ("unet",), "model.name")
    factor = 2 ** (len(cfg.channel_mult) - 1)
    _require(
        size % factor == 0,
        f"data.image_size={size} cannot be halved {len(cfg.channel_mult) - 1} times by "
        f"model.channel_mult={tuple(cfg.channel_mult)}: use a size divisible by {factor} "
        f"or fewer levels",
    )
    _require(
        cfg.base_channels % cfg.num_groups == 0,
        f"model.num_groups={cfg.num_groups} must divide model.base_channels={cfg.base_channels}",
    )
    sizes = [size // 2**i for i in range(len(cfg.channel_mult))]
    unused = sorted(set(cfg.attention_resolutions) - set(sizes))
    _require(
        not unused,
        f"model.attention_resolutions has {unused}, which no level reaches; levels are {sizes}",
    )
    _require(0 <= cfg.dropout < 1, f"model.dropout={cfg.dropout} must be in [0, 1)")


def _check_train(config, num_devices: int) -> None:
    cfg, k = config.train, config.clustering.k
    _require(cfg.learning_rate > 0, f"train.learning_rate={cfg.learning_rate} must be > 0")
    _require(cfg.num_train_steps >= 1, f"train.num_train_steps={cfg.num_train_steps} must be >= 1")
    _require(
        cfg.num_microbatches >= 1, f"train.num_microbatches={cfg.num_microbatches} must be >= 1"
    )
    _one_of(cfg.microbatch_loop, ("unroll", "scan"), "train.microbatch_loop")
    _require(0 <= cfg.ema_decay < 1, f"train.ema_decay={cfg.ema_decay} must be in [0, 1)")
    multiple = cfg.num_microbatches * k * num_devices
    _require(
        cfg.batch_size % multiple == 0,
        f"train.batch_size={cfg.batch_size} is not divisible by num_microbatches x k x devices = "
        f"{cfg.num_microbatches} x {k} x {num_devices} = {multiple}; nearest valid sizes: "
        f"{nearest_valid_batch_sizes(cfg.batch_size, multiple)}",
    )


def _check_mesh(config, num_devices: int) -> None:
    data, fsdp = config.mesh.data, config.mesh.fsdp
    _require(
        fsdp >= 1 and num_devices % fsdp == 0, f"mesh.fsdp={fsdp} must divide {num_devices} devices"
    )
    _require(
        data == -1 or data * fsdp == num_devices,
        f"mesh.data x mesh.fsdp = {data} x {fsdp} must equal the {num_devices} devices "
        "(or set mesh.data=-1)",
    )


def validate(config, num_devices: int) -> None:
    """Raises UserError naming the first invalid field of `config` for `num_devices` devices."""
    _check_diffusion(config.diffusion)
    _check_clustering(config)
    _check_model(config)
    _check_mesh(config, num_devices)
    _check_train(config, num_devices)
    _require(config.num_samples >= 1, f"num_samples={config.num_samples} must be >= 1")
    _require(
        1 <= config.sample_steps <= config.diffusion.num_timesteps,
        f"sample_steps={config.sample_steps} must be between 1 and diffusion.num_timesteps",
    )
    for field in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
        _require(config[field] >= 1, f"{field}={config[field]} must be >= 1")
    _require(config.sample_every_steps >= 0, "sample_every_steps must be >= 0 (0: only at the end)")
    _require(
        config.task_gradient_cosine_every_steps >= 0,
        "task_gradient_cosine_every_steps must be >= 0 (0: off)",
    )
