"""UNet shapes, zero output at initialisation, and dependence on the timestep."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffmtl.models import common as models_common
from diffmtl.models import unet


def test_three_levels_with_attention_keep_the_shape():
    """Three levels, attention at two of them, RGB (test_models.py: the tiny config's UNet)."""
    size, mult, attn, channels = 16, (1, 2, 2), (4, 8), 3
    model = unet.UNet(
        out_channels=channels,
        base_channels=8,
        channel_mult=mult,
        num_res_blocks=1,
        attention_resolutions=attn,
        num_heads=2,
        num_groups=4,
    )
    x = jnp.ones((3, size, size, channels))
    t = jnp.array([0, 10, 999])
    params = jax.jit(functools.partial(model.init, train=False))(jax.random.PRNGKey(0), x, t)
    out = jax.jit(functools.partial(model.apply, train=False))(params, x, t)
    assert out.shape == x.shape and out.dtype == jnp.float32
    assert np.all(np.asarray(out) == 0)  # Zero-initialised output convolution.


def test_prediction_depends_on_timestep_and_dropout_key():
    model = unet.UNet(
        out_channels=1,
        base_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        num_groups=4,
        dropout=0.5,
    )
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 1))
    params = jax.jit(functools.partial(model.init, train=False))(
        jax.random.PRNGKey(0), x, jnp.zeros(2)
    )
    # Perturb the zero-initialised output layers so the prediction is not identically 0.
    params = jax.tree.map(lambda p: p + 0.1 * jnp.ones_like(p), params)
    apply = jax.jit(model.apply, static_argnames="train")
    a = apply(params, x, jnp.array([0, 0]), train=False)
    b = apply(params, x, jnp.array([500, 500]), train=False)
    assert not np.allclose(a, b)
    d1 = apply(params, x, jnp.zeros(2), train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    d2 = apply(params, x, jnp.zeros(2), train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert not np.allclose(d1, d2)


def test_timestep_embedding_values():
    emb = models_common.timestep_embedding(jnp.array([0.0, 3.0]), 6)
    np.testing.assert_allclose(emb[0], [1, 1, 1, 0, 0, 0], atol=1e-7)
    freqs = np.exp(-np.log(10000.0) * np.arange(3) / 3)
    np.testing.assert_allclose(
        emb[1], np.concatenate([np.cos(3 * freqs), np.sin(3 * freqs)]), rtol=1e-5
    )
