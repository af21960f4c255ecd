"""Continuous uncertainty weighting (EDM2's learned log-variance, Karras et al. 2024): "UW with
T tasks", no clusters needed (works with k = 1).

A small network u(lambda) of the log-SNR lambda_t: fixed random Fourier features
sqrt(2) cos(2 pi (f_j lambda / 8 + phi_j)), f_j ~ N(0, 1), phi_j ~ U(0, 1) (EDM2's MPFourier;
lambda / 8 maps the log-SNR range of T = 1000 to about [-1.3, 1.2]), then a linear layer to one
output, zero-initialised (u = 0: weight 1 everywhere at the start). Per example the objective is
exp(-u(lambda_t)) L_t + u(lambda_t): the model's gradient weights each example by exp(-u), and
u follows d/du = 1 - exp(-u) L_t, so at equilibrium exp(u(lambda)) is the expected loss at that
noise level (EDM2 eq. 18). EDM2 trains u with the model's optimizer; here it has its own Adam
(`learning_rate`, default 0.01, ASSUMPTION), in the MTL state so resume stays exact. One backward
pass (the step passes per-example weights and losses; training/steps.py).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffmtl.mtl import base

LOG_SNR_SCALE = 1.0 / 8.0


class ContinuousUWState(NamedTuple):
    frequencies: jax.Array  # [F] fixed
    phases: jax.Array  # [F] fixed
    linear: dict  # {'w': [F], 'b': []}, learned
    adam_state: optax.OptState
    weights: jax.Array  # [k] cluster weights, all 1/k


def features(state: ContinuousUWState, log_snr: jax.Array) -> jax.Array:
    """[...] -> [..., F] Fourier features of the log-SNR."""
    arg = state.frequencies * (log_snr[..., None] * LOG_SNR_SCALE) + state.phases
    return jnp.sqrt(2.0) * jnp.cos(2.0 * jnp.pi * arg)


def log_variance(state: ContinuousUWState, log_snr: jax.Array, linear=None) -> jax.Array:
    """u(lambda) [...] for log-SNRs [...]."""
    linear = state.linear if linear is None else linear
    return features(state, log_snr) @ linear["w"] + linear["b"]


def example_weights(state: ContinuousUWState, log_snr: jax.Array) -> jax.Array:
    """exp(-u(lambda_t)) per example: the model's weight of each example's loss."""
    return jnp.exp(-log_variance(state, log_snr))


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
    learning_rate: float = base.option(0.01, "> 0", lambda v: v > 0, "Adam rate of u's weights.")
    num_features: int = base.option(
        32, ">= 1", lambda v: v >= 1, "Fourier features of the log-SNR (F)."
    )
    seed: int = base.option(
        0,
        "an integer >= 0",
        lambda v: isinstance(v, int) and v >= 0,
        "Seeds the fixed frequencies and phases.",
    )


@base.takes_options(Options)
def continuous_uw(num_tasks: int, *, options) -> optax.GradientTransformationExtraArgs:
    """Passes the (per-example weighted) gradient through and steps u on the example losses."""
    adam = optax.adam(options.learning_rate)
    num_features, seed = options.num_features, options.seed

    def init(params):
        del params
        f_key, p_key = jax.random.split(jax.random.PRNGKey(seed))
        linear = {"w": jnp.zeros((num_features,)), "b": jnp.zeros(())}
        return ContinuousUWState(
            jax.random.normal(f_key, (num_features,)),
            jax.random.uniform(p_key, (num_features,)),
            linear,
            adam.init(linear),
            jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32),
        )

    def update(updates, state, params=None, *, example_losses, example_log_snr, **extra):
        del extra
        if base.has_task_axis(updates, params, num_tasks):
            raise ValueError("continuous UW takes the weighted-loss gradient (one pass)")
        losses = jax.lax.stop_gradient(example_losses)

        def objective(linear):
            u = log_variance(state, example_log_snr, linear)
            return jnp.mean(jnp.exp(-u) * losses + u)

        grads = jax.grad(objective)(state.linear)
        step, adam_state = adam.update(grads, state.adam_state, state.linear)
        linear = optax.apply_updates(state.linear, step)
        return updates, state._replace(linear=linear, adam_state=adam_state)

    return optax.GradientTransformationExtraArgs(init, update)


METHOD = base.Method(
    name="continuous_uw",
    constructor=continuous_uw,
    options=Options,
    loss_weights=base.last_weights,
    metrics=lambda state: {
        f"continuous_uw/u_at_log_snr_{int(v)}": log_variance(state, jnp.float32(v))
        for v in (-8, -4, 0, 4, 8)
    },
    example_weights=example_weights,
    formula="per example exp(-u(lambda_t)) L_t + u(lambda_t), u on Fourier features",
    source="Karras et al. 2024 (EDM2)",
)
