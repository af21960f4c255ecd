"""build_experiment(config): everything built from a config before the first step.

Order of work: validate the config and find the data (cheap, so bad input fails before any
compile), then the clusters, mesh, model, diffusion, optimizer and the two compiled train steps
(with and without per-cluster gradients).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import linen as nn
from jax.sharding import Mesh

from diffmtl import config_validation, models, mtl, sharding
from diffmtl.autoencoder import codec as codec_lib
from diffmtl.autoencoder.codec import Codec
from diffmtl.clustering import from_config as clustering_from_config
from diffmtl.data import from_config as data_from_config
from diffmtl.data.sources import Source
from diffmtl.diffusion import schedule
from diffmtl.models import dit_weights
from diffmtl.training import steps
from diffmtl.training.optimizer import make_optimizer
from diffmtl.training.train_state import TrainState, create_train_state


def batch_layout(config) -> tuple[int, int, int]:
    """(M, k, N) with B = M k N."""
    m, k = config.train.num_microbatches, config.clustering.k
    return m, k, config.train.batch_size // (m * k)


class Experiment(NamedTuple):
    """Everything built from a config before training starts."""

    source: Source | None  # None when built without data (dry runs).
    example_shape: tuple[int, int, int]  # (H, W, C) of a model-space example (x0)
    image_shape: tuple[int, int, int]  # (H, W, C) of the pixels (samples, FID references)
    state_initializer: Callable[[jax.Array], TrainState]  # key -> fresh TrainState
    state_sharding: TrainState  # NamedSharding per leaf (sharding.state_shardings)
    mesh: Mesh
    layout: tuple[int, int, int]  # (M, k, N)
    model: nn.Module
    diffusion: schedule.Diffusion
    tx: optax.GradientTransformationExtraArgs
    method: mtl.Method  # The MTL method's record (diffmtl.mtl.METHODS).
    boundaries: np.ndarray  # [k, 2] int32 cluster intervals.
    train_step: dict[bool, Callable]  # with_task_grads -> jitted step(state, batch).
    task_gradient_cosine: Callable  # jitted (state, batch) -> [k, k] cosines.
    codec: Codec | None = None  # Latent diffusion's autoencoder (None in pixel space or dry runs).


def build_experiment(
    config, devices: Sequence[jax.Device] | None = None, with_data: bool = True
) -> Experiment:
    """Validates `config` and finds the data (cheap, before any compile), then builds the rest.

    `devices` (default: all) are the mesh's devices. Without data (dry runs) the example shape
    comes from data.image_size and data.channels alone.
    """
    devices = list(jax.devices() if devices is None else devices)
    config_validation.validate(config, len(devices), check_files=with_data)
    source = data_from_config.make_source(config) if with_data else None
    example_shape = config_validation.example_shape(config)
    image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
    boundaries = clustering_from_config.cluster_boundaries(config, placeholder=not with_data)
    log_snr = schedule.log_snr(schedule.schedule_alphas_cumprod(config))
    logging.info(
        "Clusters (%s):\n%s",
        config.clustering.method,
        clustering_from_config.boundaries_table(boundaries, log_snr),
    )
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, devices)
    model = models.make_model(config, example_shape)
    diffusion = schedule.make_diffusion(config)
    tx = make_optimizer(config, config.clustering.k)
    method = mtl.method(config.mtl.method)
    init = functools.partial(
        create_train_state,
        model,
        tx,
        example_shape=example_shape,
        boundaries=boundaries,
        num_classes=config.data.num_classes,
        num_ema_profiles=len(config.train.ema_profiles),
    )
    state_sharding = sharding.state_shardings(jax.eval_shape(init, jax.random.PRNGKey(0)), mesh)
    train_step = {
        flag: steps.make_train_step(
            config, model, diffusion, tx, method, mesh, flag, state_sharding=state_sharding
        )
        for flag in (False, True)
    }
    cosine = steps.make_task_gradient_cosine(config, model, diffusion, mesh)
    return Experiment(
        source,
        example_shape,
        image_shape,
        init,
        state_sharding,
        mesh,
        batch_layout(config),
        model,
        diffusion,
        tx,
        method,
        boundaries,
        train_step,
        cosine,
        codec_lib.make_codec(config, mesh) if with_data and config.data.name == "latents" else None,
    )


def initial_state(config, experiment: Experiment) -> TrainState:
    """A fresh TrainState from config.seed with the clusters of config.clustering, sharded.

    model.init_checkpoint (a DiT in the official layout, models/dit_weights.py): the params and
    their EMA start from it; the file is read and checked before anything compiles.
    """
    key = jax.random.PRNGKey(config.seed)
    pretrained = None
    if config.model.init_checkpoint:
        template = jax.eval_shape(experiment.state_initializer, key).params
        pretrained = dit_weights.load_official(
            config.model.init_checkpoint, template, config.model.variant
        )
    init = jax.jit(experiment.state_initializer, out_shardings=experiment.state_sharding)
    state = init(key)
    if pretrained is None:
        return state
    params = jax.device_put(pretrained, experiment.state_sharding.params)
    return state.replace(params=params, ema_params=jax.tree.map(jnp.copy, params))
