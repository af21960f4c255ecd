"""Pure jitted training step: per-cluster loss vector, MTL gradient slot, micro-batches, EMA.

Two gradient forms feed the MTL transform (docs/method.md):
  weighted (with_task_grads=False): one gradient of sum_i w_i L_i, w = the method's loss
    weights; what vanilla training costs.
  per cluster (with_task_grads=True): g_i = grad L_i for every cluster, [k, ...] on each leaf,
    one pass per cluster sub-batch, so about one backward pass over the batch in all.
The loop keeps both compiled and picks one per step on the host (`needs_task_grads`).

The per-example loss is written per device with `jax.shard_map` over the batch axis, with the
parameters replicated; gradients are taken outside it, so the transpose of the shard_map sums
the parameter cotangents over devices. Each example carries its own dropout key, so results do
not depend on the number of devices nor on the number of micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh, PartitionSpec

from diffmtl import models, sharding, tasks
from diffmtl.diffusion import losses, schedule
from diffmtl.mtl import base as mtl_base
from diffmtl.training import post_hoc_ema
from diffmtl.training.optimizer import clip_norm, grad_norm, mtl_state
from diffmtl.training.train_state import TrainState, ema_decay

PerExampleLoss = Callable[..., jax.Array]
LABEL_DROPOUT = 0x1ABE1  # fold_in data deriving an example's label-dropout key from its key
POSTERIOR = 0x2057  # fold_in data deriving an example's posterior-sample key from its key


def sample_posterior(mean: jax.Array, std: jax.Array, keys: jax.Array) -> jax.Array:
    """Latent diffusion's x0 = mean + std * eps, mean and std [n, h, w, z], eps from each
    example's own key [n, 2] folded with POSTERIOR (independent of its noise and dropout)."""
    eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, POSTERIOR), mean.shape[1:]))
    return mean + std * eps(keys)


def drop_labels(labels: jax.Array, keys: jax.Array, rate: float, null_label: int) -> jax.Array:
    """Label dropout for classifier-free guidance: labels [n] int, keys [n, 2] (each example's
    own key) -> labels with each replaced by null_label with probability `rate`, decided by
    fold_in(key, LABEL_DROPOUT) so that it depends on the example alone (not on the device
    count or the micro-batches) and is independent of the example's dropout mask."""
    drop = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, LABEL_DROPOUT), rate))
    return jnp.where(drop(keys), null_label, labels)


def make_per_example_loss(
    model: nn.Module,
    diffusion: schedule.Diffusion,
    mesh: Mesh,
    class_dropout: float = 0.0,
    null_label: int = 0,
    per_example_dropout: bool = True,
) -> PerExampleLoss:
    """Returns loss(params, examples, t, noise, dropout_keys) -> per-example loss [k', N].

    Inputs are laid out [k', N, ...] with N split over the mesh's batch axes: examples
    {'x0': [k', N, H, W, C]} (and 'label' [k', N] int for a class-conditional model, dropped
    to null_label at rate class_dropout; 'x0_std' like x0 for latents whose posterior is
    sampled: x0 + x0_std * eps), noise like x0, t [k', N] int, dropout_keys [k', N, 2].

    per_example_dropout: apply the model to one example at a time (vmapped) with its own dropout
    key, so that dropout does not depend on the device count; a model without dropout is applied
    to the device's whole batch at once (a DiT step 1.2x faster on this CPU).
    """

    def local(params, examples, t, noise, dropout_keys):
        lead = t.shape
        x0, std, labels, t, noise, dropout_keys = (
            None if a is None else a.reshape((-1, *a.shape[2:]))
            for a in (
                examples["x0"],
                examples.get("x0_std"),
                examples.get("label"),
                t,
                noise,
                dropout_keys,
            )
        )
        if std is not None:
            x0 = sample_posterior(x0, std, dropout_keys)
        x_t = schedule.q_sample(diffusion, x0, t, noise)
        if labels is not None and class_dropout > 0:
            labels = drop_labels(labels, dropout_keys, class_dropout, null_label)

        def predict(x, t_i, key, y):  # One example, its own dropout key and label.
            cond = None if y is None else y[None]
            out = models.denoise(
                model, params, x[None], t_i[None], cond, train=True, rngs={"dropout": key}
            )
            return out[0]

        if per_example_dropout:
            out = jax.vmap(predict)(x_t, t, dropout_keys, labels)
        else:
            out = models.denoise(model, params, x_t, t, labels, train=True)
        return losses.per_example_loss(diffusion, out, x0, x_t, t, noise).reshape(lead)

    spec = sharding.batch_spec(1)
    return jax.shard_map(
        local, mesh=mesh, in_specs=(PartitionSpec(), spec, spec, spec, spec), out_specs=spec
    )


def loss_from_config(config, model: nn.Module, diffusion: schedule.Diffusion, mesh: Mesh):
    """make_per_example_loss with the config's label dropout, null label and dropout rate."""
    return make_per_example_loss(
        model,
        diffusion,
        mesh,
        config.model.class_dropout,
        config.data.num_classes,
        per_example_dropout=config.model.dropout > 0,
    )


def _loop(body, carry, xs, loop: str):
    """lax.scan(body, carry, xs), or the same written out as straight-line code.

    loop='scan': constant compile time in the number of iterations; the choice on GPU and TPU.
    loop='unroll': compile time grows with the iterations, but XLA:CPU runs convolutions inside
    a loop body about 13x slower (measured here: default model, M = 5 micro-batches of 15:
    15.9 s per step with scan, 1.2 s unrolled).
    """
    if loop == "scan":
        return jax.lax.scan(body, carry, xs)
    outs = []
    for i in range(jax.tree.leaves(xs)[0].shape[0]):
        carry, out = body(carry, jax.tree.map(lambda a, i=i: a[i], xs))
        outs.append(out)
    return carry, jax.tree.map(lambda *o: jnp.stack(o), *outs)


def weighted_gradients(
    loss_fn: PerExampleLoss, params, batch, weights: jax.Array, loop: str, example_weights=None
):
    """Gradient of sum_i w_i L_i over batch = (examples, t, noise, keys) [M, k, N, ...], weights
    [k]; with example_weights [M, k, N], L_i is the mean of the weighted per-example losses.
    Accumulated over the M micro-batches. Returns (param-shaped grads, task_losses [k] of the
    unweighted losses, per-example losses [M, k, N]).
    """
    ones = jnp.ones(batch[1].shape, jnp.float32)  # batch[1] = t [M, k, N]
    scales = ones if example_weights is None else example_weights

    def add_microbatch(grad_sum, inputs):  # microbatch: [k, N, ...]
        microbatch, scale = inputs

        def weighted_loss(p):
            per_example = loss_fn(p, *microbatch)
            return jnp.dot(weights, tasks.task_losses(scale * per_example)), per_example

        (_, per_example), grads = jax.value_and_grad(weighted_loss, has_aux=True)(params)
        return jax.tree.map(jnp.add, grad_sum, grads), per_example

    zeros = jax.tree.map(jnp.zeros_like, params)
    grad_sum, per_example = _loop(add_microbatch, zeros, (batch, scales), loop)  # [M, k, N]
    num_microbatches = jax.tree.leaves(batch)[0].shape[0]
    grads = jax.tree.map(lambda g: g / num_microbatches, grad_sum)
    return grads, tasks.task_losses(per_example), per_example


def task_gradients(loss_fn: PerExampleLoss, params, batch, loop: str, grad_dtype=jnp.float32):
    """Per-cluster gradients g_i = grad L_i over batch = (examples, t, noise, keys) [M, k, N, ...].

    One forward and backward pass per cluster over its M N examples (the cluster is the
    micro-batch: B / k examples at a time), so the k passes together cost about one pass over
    the batch, with no per-example or grouped-convolution gradients. A vmap over the cluster
    axis measured 2.1x the weighted-loss step here (XLA:CPU's grouped convolutions).
    Each g_i is cast to `grad_dtype` as soon as it is computed (bfloat16 halves the k x
    parameters of memory they take). Returns (grads [k, ...] on every leaf, task_losses [k]).
    """
    by_cluster = jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0), batch)  # [k, M, N, ...]

    def one_cluster(carry, cluster_batch):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(loss_fn(p, *cluster_batch)))(params)
        return carry, (jax.tree.map(lambda g: g.astype(grad_dtype), grads), loss)

    _, (grads, task_losses) = _loop(one_cluster, None, by_cluster, loop)
    return grads, task_losses


def draw_noise_and_timesteps(state: TrainState, batch_shape: tuple[int, ...], mesh: Mesh):
    """t, noise and per-example dropout keys for step `state.step`, in layout [M, k, N, ...].

    Drawn in the canonical [k, M N] layout from fold_in(rng, step), so they do not depend on M
    or on the device count. batch_shape is the examples' x0 shape [M, k, N, H, W, C].
    """
    m, k, n = batch_shape[:3]
    key = jax.random.fold_in(state.rng, state.step)
    t_key, noise_key, dropout_key = jax.random.split(key, 3)
    t = tasks.sample_timesteps(t_key, state.boundaries, m * n)
    noise = jax.random.normal(noise_key, (k, m * n, *batch_shape[3:]), jnp.float32)
    keys = jax.random.split(dropout_key, k * m * n).reshape(k, m * n, -1)
    shard = sharding.batch_sharding(mesh, 2)
    return tuple(
        jax.lax.with_sharding_constraint(tasks.microbatch_view(a, m), shard)
        for a in (t, noise, keys)
    )


def make_task_gradient_cosine(config, model: nn.Module, diffusion: schedule.Diffusion, mesh: Mesh):
    """Returns jitted cosine(state, batch) -> [k, k] cosine similarities of the cluster gradients.

    A cheap live view of the paper's task affinity: the per-cluster gradients of this step's
    batch (same t and noise as the train step would draw), without updating anything.
    """
    loss_fn = loss_from_config(config, model, diffusion, mesh)
    loop = config.train.microbatch_loop

    def cosine(state: TrainState, batch: dict[str, jax.Array]) -> jax.Array:
        t, noise, keys = draw_noise_and_timesteps(state, batch["x0"].shape, mesh)
        grads, _ = task_gradients(loss_fn, state.params, (batch, t, noise, keys), loop)
        gram = mtl_base.gram_matrix(grads)
        norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 1e-30))
        return gram / (norms[:, None] * norms[None, :])

    return jax.jit(cosine, out_shardings=sharding.replicated(mesh))


def all_finite(*trees) -> jax.Array:
    """[] bool: every element of every leaf is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(trees)]))


def make_train_step(
    config,
    model: nn.Module,
    diffusion: schedule.Diffusion,
    tx: optax.GradientTransformationExtraArgs,
    method: mtl_base.Method,
    mesh: Mesh,
    with_task_grads: bool,
    task_gradients: Callable = task_gradients,
    state_sharding=None,
    max_traces: int = 0,
):
    """Returns jitted step(state, batch) -> (state, metrics); state donated.

    batch: the pipeline's dict of examples laid out [M, k, N, ...] ({'x0': [M, k, N, H, W, C]}).

    state_sharding: the TrainState's shardings (sharding.state_shardings; default replicated).

    task_gradients(loss_fn, params, batch, loop, grad_dtype) -> ([k, ...] grads, task_losses
    [k]) computes the per-cluster gradients (benchmarks swap in a naive reference).

    max_traces > 0: chex.assert_max_traces (tests: a step that re-traces, so re-compiles, fails).

    metrics: loss (mean of task_losses), weighted_loss (sum_i w_i L_i), task_losses [k],
    loss_weights [k] (the MTL method's w used by this step), skipped (1.0 if skipped),
    update_norm (the global norm of the parameters' change: AdamW's step, learning rate
    included, 0 when skipped; how a method's gradient scale reaches the parameters), grad_norm
    (the combined gradient's global norm before the clip) and clip_binds (1.0 when the clip
    train.grad_clip_norm shortened it; its mean over a log interval is the fraction of steps).

    Non-finite guard: when a task loss or a gradient is not finite, the step changes nothing but
    `step` (so the next step draws new noise) and `consecutive_skips`; parameters, EMA, optimizer
    and MTL state stay as they were, so a non-finite state is never produced.
    """
    loss_fn = loss_from_config(config, model, diffusion, mesh)
    max_decay = config.train.ema_decay
    gammas = [post_hoc_ema.sigma_rel_to_gamma(s) for s in config.train.ema_profiles]
    clip = clip_norm(config)
    loop = config.train.microbatch_loop
    grad_dtype = jnp.dtype(config.mtl.grad_dtype)
    abar = diffusion.alphas_cumprod
    log_snr = jnp.log(abar) - jnp.log1p(-abar)  # [T]
    width = None
    if config.clustering.width_weighting:
        num_timesteps = config.diffusion.num_timesteps

        def width(state):
            return tasks.width_factors(state.boundaries, num_timesteps)

    k, normalize = config.clustering.k, config.mtl.normalize_weights

    def step(state: TrainState, batch: dict[str, jax.Array]):
        chex.assert_rank(batch["x0"], 6)  # [M, k, N, H, W, C]
        chex.assert_axis_dimension(batch["x0"], 1, k)
        t, noise, keys = draw_noise_and_timesteps(state, batch["x0"].shape, mesh)
        weights = method.loss_weights(mtl_state(state.opt_state))
        chex.assert_shape(weights, (k,))
        if normalize:  # mtl.normalize_weights: the ratios without the common scale.
            weights = weights / jnp.sum(weights)

        inputs = (batch, t, noise, keys)
        # clustering.width_weighting: L_i -> f_i L_i, so g_i -> f_i g_i (1 when off).
        factors = jnp.ones_like(weights) if width is None else width(state)
        if with_task_grads:
            grads, task_losses = task_gradients(loss_fn, state.params, inputs, loop, grad_dtype)
            if width is not None:
                grads = jax.tree.map(
                    lambda g: (g * factors.reshape(-1, *[1] * (g.ndim - 1))).astype(g.dtype),
                    grads,
                )
            per_example = None
        else:
            example_weights = None
            if method.example_weights is not None:
                example_weights = method.example_weights(mtl_state(state.opt_state), log_snr[t])
            grads, task_losses, per_example = weighted_gradients(
                loss_fn, state.params, inputs, weights * factors, loop, example_weights
            )
        task_losses = task_losses * factors
        chex.assert_shape(task_losses, (k,))

        updates, opt_state = tx.update(
            grads,
            state.opt_state,
            state.params,
            task_losses=task_losses,
            example_losses=per_example,
            example_log_snr=log_snr[t],
        )
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay(state.step, max_decay)
        ema_params = jax.tree.map(
            lambda e, p: decay * e + (1 - decay) * p, state.ema_params, params
        )
        profiles = post_hoc_ema.update_profiles(state.ema_profiles, params, state.step + 1, gammas)
        finite = all_finite(task_losses, grads)
        params, ema_params, opt_state, profiles = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old),
            (params, ema_params, opt_state, profiles),
            (state.params, state.ema_params, state.opt_state, state.ema_profiles),
        )
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            ema_params=ema_params,
            ema_profiles=profiles,
            opt_state=opt_state,
            consecutive_skips=jnp.where(finite, 0, state.consecutive_skips + 1),
        )
        metrics = {
            "skipped": 1.0 - finite.astype(jnp.float32),
            "consecutive_skips": new_state.consecutive_skips,
            "loss": jnp.mean(task_losses),
            "weighted_loss": jnp.dot(weights, task_losses),
            "task_losses": task_losses,
            "loss_weights": weights,
            "update_norm": optax.global_norm(jax.tree.map(jnp.subtract, params, state.params)),
            "grad_norm": grad_norm(opt_state),
            "clip_binds": (grad_norm(opt_state) > clip).astype(jnp.float32) if clip else 0.0,
        }
        metrics.update(method.metrics(mtl_state(opt_state)))
        return new_state, metrics

    if max_traces:
        step = chex.assert_max_traces(step, n=max_traces)
    replicated = sharding.replicated(mesh)
    out_shardings = (replicated if state_sharding is None else state_sharding, replicated)
    return jax.jit(step, donate_argnums=0, out_shardings=out_shardings)
