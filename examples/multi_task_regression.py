"""diffmtl.mtl outside diffusion: three regression heads on shared features, any method by name.

  python examples/multi_task_regression.py --method=upgrad

The three tasks pull the shared layer in different directions (their targets are built from
partly opposed directions), which is where a multi-task method differs from plain averaging.
Needs only jax, optax and diffmtl.mtl; runs in seconds on a CPU.
"""

import argparse

import jax
import jax.numpy as jnp
import optax

from diffmtl import mtl

K, DIM, HIDDEN, N = 3, 16, 8, 256


def make_data(key):
    """Inputs x [N, DIM] and targets y [K, N]: task i is a noisy projection of x onto a
    direction that the other tasks partly oppose."""
    kx, kd, kn = jax.random.split(key, 3)
    x = jax.random.normal(kx, (N, DIM))
    directions = jax.random.normal(kd, (K, DIM)).at[1].add(-jax.random.normal(kd, (DIM,)))
    return x, directions @ x.T + 0.1 * jax.random.normal(kn, (K, N))


def task_losses(params, x, y):
    """[K] mean squared error of each head on the shared features."""
    features = jnp.tanh(x @ params["shared"])  # [N, HIDDEN]
    predictions = (features @ params["heads"]).T  # [K, N]
    return jnp.mean((predictions - y) ** 2, axis=1)


def train(method: str, steps: int = 200, seed: int = 0) -> jax.Array:
    """Trains with mtl.<method> and returns the final task losses [K]."""
    key_params, key_data = jax.random.split(jax.random.PRNGKey(seed))
    params = {
        "shared": 0.3 * jax.random.normal(key_params, (DIM, HIDDEN)),
        "heads": jnp.zeros((HIDDEN, K)),
    }
    x, y = make_data(key_data)
    # The MTL method first: it turns per-task gradients [K, ...] into one update.
    optimizer = optax.chain(getattr(mtl, method)(K), optax.adam(1e-2))
    state = optimizer.init(params)

    @jax.jit
    def step(params, state):
        losses = task_losses(params, x, y)
        per_task = jax.jacrev(task_losses)(params, x, y)  # every leaf [K, *param.shape]
        updates, state = optimizer.update(per_task, state, params, task_losses=losses)
        return optax.apply_updates(params, updates), state, losses

    for _ in range(steps):
        params, state, losses = step(params, state)
    return task_losses(params, x, y)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    # continuous_uw weights each example by its noise level: diffusion only.
    methods = sorted(set(mtl.METHODS) - {"continuous_uw"})
    parser.add_argument("--method", default="upgrad", choices=methods)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(args.method, "final task losses:", train(args.method, args.steps))
