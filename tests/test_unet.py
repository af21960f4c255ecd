"""UNet shapes, zero output at initialisation, and dependence on the timestep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmtl.models import unet


@pytest.mark.parametrize(
    "size,mult,attn,channels", [(28, (1, 2), (14,), 1), (16, (1, 2, 2), (4, 8), 3)]
)
def test_output_shape_matches_input(size, mult, attn, channels):
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
    params = model.init(jax.random.PRNGKey(0), x, t, train=False)
    out = model.apply(params, x, t, train=False)
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
    params = model.init(jax.random.PRNGKey(0), x, jnp.zeros(2), train=False)
    # Perturb the zero-initialised output layers so the prediction is not identically 0.
    params = jax.tree.map(lambda p: p + 0.1 * jnp.ones_like(p), params)
    a = model.apply(params, x, jnp.array([0, 0]), train=False)
    b = model.apply(params, x, jnp.array([500, 500]), train=False)
    assert not np.allclose(a, b)
    d1 = model.apply(params, x, jnp.zeros(2), train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    d2 = model.apply(params, x, jnp.zeros(2), train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert not np.allclose(d1, d2)


def test_timestep_embedding_values():
    emb = unet.timestep_embedding(jnp.array([0.0, 3.0]), 6)
    np.testing.assert_allclose(emb[0], [1, 1, 1, 0, 0, 0], atol=1e-7)
    freqs = np.exp(-np.log(10000.0) * np.arange(3) / 3)
    np.testing.assert_allclose(
        emb[1], np.concatenate([np.cos(3 * freqs), np.sin(3 * freqs)]), rtol=1e-5
    )
