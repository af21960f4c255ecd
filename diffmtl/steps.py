"""Pure jitted training step: per-cluster loss vector, MTL gradient slot, micro-batches, EMA.

Two gradient forms feed the MTL transform (DESIGN.md):
  weighted (with_task_grads=False): one gradient of sum_i w_i L_i, w = the method's loss
    weights; what vanilla training costs.
  per cluster (with_task_grads=True): g_i = grad L_i for every cluster, [k, ...] on each leaf,
    from the k equal sub-batches (vmap over the cluster axis), so about one backward pass.
The loop keeps both compiled and picks one per step on the host (`needs_task_grads`).

The per-example loss is written per device with `jax.shard_map` over the batch axis, with the
parameters replicated; gradients are taken outside it, so the transpose of the shard_map sums
the parameter cotangents over devices. Each example carries its own dropout key, so results do
not depend on the number of devices nor on the number of micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh, PartitionSpec

from diffmtl import diffusion as diffusion_lib
from diffmtl import sharding, tasks
from diffmtl.optimizer import mtl_state
from diffmtl.train_state import TrainState, ema_decay

PerExampleLoss = Callable[..., jax.Array]


def make_per_example_loss(
    model: nn.Module, diffusion: diffusion_lib.Diffusion, mesh: Mesh
) -> PerExampleLoss:
    """Returns loss(params, x0, t, noise, dropout_keys) -> weighted eps loss [k', N].

    Inputs are laid out [k', N, ...] with N split over the mesh's batch axes: x0 and noise
    [k', N, H, W, C], t [k', N] int, dropout_keys [k', N, 2] uint32.
    """

    def local(params, x0, t, noise, dropout_keys):
        lead = t.shape
        x0, t, noise, dropout_keys = (
            a.reshape((-1, *a.shape[2:])) for a in (x0, t, noise, dropout_keys)
        )
        x_t = diffusion_lib.q_sample(diffusion, x0, t, noise)

        def predict(x, t_i, key):  # One example, its own dropout key.
            out = model.apply(
                {"params": params}, x[None], t_i[None], train=True, rngs={"dropout": key}
            )
            return out[0]

        eps = jax.vmap(predict)(x_t, t, dropout_keys)
        loss = diffusion_lib.eps_loss(eps, noise) * diffusion.loss_weights[t]  # [k' n]
        return loss.reshape(lead)

    spec = sharding.batch_spec(1)
    return jax.shard_map(
        local, mesh=mesh, in_specs=(PartitionSpec(), spec, spec, spec, spec), out_specs=spec
    )


def microbatch_gradients(
    loss_fn: PerExampleLoss, params, batch, weights: jax.Array, with_task_grads: bool
):
    """Gradient and task_losses [k] of one micro-batch `batch` = (x0, t, noise, keys) [k, N, ...].

    Returns param-shaped grad of sum_i w_i L_i, or per-cluster grads [k, ...] per leaf.
    """
    if with_task_grads:

        def cluster_loss(p, *cluster_batch):  # One cluster's [N, ...] sub-batch.
            return jnp.mean(loss_fn(p, *(a[None] for a in cluster_batch)))

        losses, grads = jax.vmap(jax.value_and_grad(cluster_loss), in_axes=(None, 0, 0, 0, 0))(
            params, *batch
        )
        return grads, losses

    def weighted_loss(p):
        losses = tasks.task_losses(loss_fn(p, *batch))
        return jnp.dot(weights, losses), losses

    (_, losses), grads = jax.value_and_grad(weighted_loss, has_aux=True)(params)
    return grads, losses


def accumulate_gradients(
    loss_fn: PerExampleLoss, params, batch, weights: jax.Array, with_task_grads: bool, loop: str
):
    """Sums micro-batch gradients; batch = (x0, t, noise, keys) [M, k, N, ...].

    Returns (sum over micro-batches of the gradients, task_losses per micro-batch [M, k]).
    loop='scan' uses lax.scan: constant compile time in M, the choice on GPU and TPU.
    loop='unroll' writes the M micro-batches out as straight-line code: compile time grows
    with M, but XLA:CPU runs convolutions inside a loop body about 10x slower (measured here:
    M = 5 of 15 examples, 15.9 s per step with scan against 1.2 s unrolled).
    """
    lead = (batch[0].shape[1],) if with_task_grads else ()
    zeros = jax.tree.map(lambda p: jnp.zeros((*lead, *p.shape), p.dtype), params)

    def add_microbatch(grad_sum, microbatch):
        grads, losses = microbatch_gradients(loss_fn, params, microbatch, weights, with_task_grads)
        return jax.tree.map(jnp.add, grad_sum, grads), losses

    if loop == "scan":
        return jax.lax.scan(add_microbatch, zeros, batch)
    grad_sum, losses = zeros, []
    for m in range(batch[0].shape[0]):
        grad_sum, microbatch_losses = add_microbatch(grad_sum, tuple(a[m] for a in batch))
        losses.append(microbatch_losses)
    return grad_sum, jnp.stack(losses)


def draw_noise_and_timesteps(state: TrainState, batch_shape: tuple[int, ...], mesh: Mesh):
    """t, noise and per-example dropout keys for step `state.step`, in layout [M, k, N, ...].

    Drawn in the canonical [k, M N] layout from fold_in(rng, step), so they do not depend on M
    or on the device count. batch_shape is the images' [M, k, N, H, W, C].
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


def make_train_step(
    config,
    model: nn.Module,
    diffusion: diffusion_lib.Diffusion,
    tx: optax.GradientTransformationExtraArgs,
    method: ModuleType,
    mesh: Mesh,
    with_task_grads: bool,
):
    """Returns jitted step(state, images [M, k, N, H, W, C]) -> (state, metrics); state donated.

    metrics: loss (mean of task_losses), weighted_loss (sum_i w_i L_i), task_losses [k].
    """
    loss_fn = make_per_example_loss(model, diffusion, mesh)
    max_decay = config.train.ema_decay
    loop = config.train.microbatch_loop

    def step(state: TrainState, images: jax.Array):
        t, noise, keys = draw_noise_and_timesteps(state, images.shape, mesh)
        weights = method.loss_weights(mtl_state(state.opt_state))

        grad_sum, losses = accumulate_gradients(
            loss_fn, state.params, (images, t, noise, keys), weights, with_task_grads, loop
        )
        num_microbatches = images.shape[0]
        grads = jax.tree.map(lambda g: g / num_microbatches, grad_sum)
        task_losses = jnp.mean(losses, axis=0)  # [k]

        updates, opt_state = tx.update(
            grads, state.opt_state, state.params, task_losses=task_losses
        )
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay(state.step, max_decay)
        ema_params = jax.tree.map(
            lambda e, p: decay * e + (1 - decay) * p, state.ema_params, params
        )
        new_state = state.replace(
            step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state
        )
        metrics = {
            "loss": jnp.mean(task_losses),
            "weighted_loss": jnp.dot(weights, task_losses),
            "task_losses": task_losses,
        }
        return new_state, metrics

    return jax.jit(step, donate_argnums=0, out_shardings=sharding.replicated(mesh))
