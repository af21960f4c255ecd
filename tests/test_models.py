"""The model seam: every registered model is built from the config, called as
model(x, t, cond, *, train) through models.denoise, and refuses conditioning it does not have."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_tiny_config
from diffmtl import models
from diffmtl.errors import UserError

SHAPE = (8, 8, 1)


def _config(name, learn_sigma=False):
    config = make_tiny_config(name)
    config.diffusion.learn_sigma = learn_sigma
    config.model.attention_resolutions = (4,)  # an 8-pixel UNet's second level
    if name == "dit":
        config.model.variant, config.model.dropout = "DiT-Ti/4", 0.0  # 2 x 2 tokens
    return config


@pytest.mark.parametrize("learn_sigma", [False, True])
@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_predicts_the_example_shape_and_starts_at_zero(name, learn_sigma):
    model = models.make_model(_config(name, learn_sigma), SHAPE)
    x, t = jnp.ones((2, *SHAPE)), jnp.array([0, 999])
    params = jax.jit(lambda key: model.init(key, x, t, None, train=False))(jax.random.PRNGKey(0))
    out = jax.jit(lambda p: models.denoise(model, p["params"], x, t))(params)
    chex.assert_shape(out, (2, *SHAPE[:2], SHAPE[-1] * (2 if learn_sigma else 1)))
    np.testing.assert_array_equal(out, 0.0)  # zero-initialised output layer


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_unconditional_models_refuse_a_condition(name):
    model = models.make_model(_config(name), SHAPE)
    x, t = jnp.ones((1, *SHAPE)), jnp.zeros((1,), jnp.int32)
    with pytest.raises(ValueError, match="cond=None"):
        jax.eval_shape(
            lambda: model.init(jax.random.PRNGKey(0), x, t, jnp.zeros((1,), jnp.int32), train=False)
        )


def test_unknown_model_and_bad_shapes_are_user_errors():
    config = _config("unet")
    config.model.name = "vit"
    with pytest.raises(
        UserError, match=r"model.name='vit' is unknown; use one of \['dit', 'toy', 'unet'\]"
    ):
        models.make_model(config, SHAPE)
    with pytest.raises(UserError, match="data.image_size=9 cannot be halved"):
        models.make_model(_config("unet"), (9, 9, 1))
    models.make_model(_config("toy"), (9, 9, 1))  # the toy takes any size
