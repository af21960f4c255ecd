"""Trains the Fashion-MNIST KL autoencoder and writes its weights (one-off; the result committed).

  python -m tools.train_fmnist_autoencoder [--steps=3000] [--out=diffmtl/autoencoder/weights/...]

28x28 images centre-padded to 32 -> 8x8x4 latents (pretrained.FMNIST_SIZES). Loss per image:
the L1 reconstruction error summed over the 28x28 pixels (the padding is not scored) plus
kl_weight x KL(posterior || N(0, I)), z drawn from the posterior (LDM's KL autoencoder without
its perceptual and adversarial terms). Adam, cosine-decayed rate, fixed seed and data order.
Prints JSON: the test split's reconstruction FID_FMNIST and mean |error|, the latents' std
(the scale factor is its inverse, as SD's 0.18215), and the checksum to paste into
pretrained.FMNIST_SHA256.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from configs import fashion_mnist
from diffmtl import autoencoder, sharding
from diffmtl.autoencoder import codec as codec_lib
from diffmtl.autoencoder import kl, pretrained
from diffmtl.data import images as images_lib
from diffmtl.data.fashion_mnist import DEFAULT_DIR, FashionMNIST
from diffmtl.evaluation.metrics import features, frechet, params_io

FLAGS = flags.FLAGS


def fmnist_config():
    config = fashion_mnist.get_config()
    pretrained.use_fmnist_autoencoder(config)
    return config


def train(config, train_x: np.ndarray, steps: int, batch_size: int, seed: int, kl_weight: float):
    """Trained params; train_x float32 [n, 28, 28, 1] in [-1, 1]."""
    model = autoencoder.make_autoencoder(config)
    size = autoencoder.input_size(config)
    key = jax.random.PRNGKey(seed)
    params = model.init(key, jnp.zeros((1, size, size, 1)))["params"]
    tx = optax.adam(optax.cosine_decay_schedule(FLAGS.learning_rate, steps))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, step_key):
        def loss_fn(p):
            recon, mean, std = model.apply({"params": p}, codec_lib.pad_to(x, size), step_key)
            error = jnp.abs(codec_lib.crop_to(recon, x.shape[1]) - x)
            rec = jnp.sum(error.reshape(x.shape[0], -1), axis=-1)
            return jnp.mean(rec + kl_weight * kl.kl_to_standard_normal(mean, std))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    order, start = rng.permutation(len(train_x)), time.perf_counter()
    for i in range(steps):
        if (i + 1) * batch_size > len(order):
            order = np.concatenate([order, rng.permutation(len(train_x))])
        idx = order[i * batch_size : (i + 1) * batch_size]
        params, opt_state, loss = step(params, opt_state, train_x[idx], jax.random.fold_in(key, i))
        if i % 200 == 0 or i == steps - 1:
            elapsed = time.perf_counter() - start
            print(f"step {i}: loss {float(loss):.2f} ({elapsed:.0f} s)", flush=True)
    return jax.device_get(params)


def evaluate(config, params, test_x: np.ndarray, test_uint8: np.ndarray) -> dict:
    """Reconstruction FID_FMNIST and mean |error| of the test split (posterior means)."""
    mesh = sharding.make_mesh()
    codec = codec_lib.make_codec(config, mesh, params)
    means, recons = [], []
    for start in range(0, len(test_x), 500):
        mean, _ = codec.encode(test_x[start : start + 500])
        means.append(mean)
        z = jax.device_put(mean, sharding.batch_sharding(mesh, 0))
        recons.append(sharding.to_host(codec.decode(z)))  # scale factor 1 here
    means, recons = np.concatenate(means), np.concatenate(recons)
    net = features.make_feature_network(config.eval)
    extract = features.make_extractor(net, mesh, 500)
    real, fake = extract(test_uint8)[0], extract(images_lib.to_uint8(recons))[0]
    fid = frechet.frechet_distance(
        *frechet.feature_statistics(fake), *frechet.feature_statistics(real)
    )
    return {
        "reconstruction_fid_fmnist": fid,
        "mean_abs_error": float(np.mean(np.abs(recons - test_x))),
        "latent_std": float(np.std(means)),
    }


def main(argv):
    del argv
    config = fmnist_config()
    config.autoencoder.scale_factor = 1.0
    train_set, test_set = (
        FashionMNIST(FLAGS.data_dir, "train"),
        FashionMNIST(FLAGS.data_dir, "test"),
    )
    train_x = images_lib.to_model_range(train_set.images(np.arange(train_set.num_examples)))
    test_uint8 = test_set.images(np.arange(test_set.num_examples))
    params = train(config, train_x, FLAGS.steps, FLAGS.batch_size, FLAGS.seed, FLAGS.kl_weight)
    digest = params_io.save_params(FLAGS.out, params)
    result = evaluate(config, params, images_lib.to_model_range(test_uint8), test_uint8)
    print(json.dumps({"out": FLAGS.out, "sha256": digest, **result}))


if __name__ == "__main__":
    flags.DEFINE_string("out", pretrained.FMNIST_WEIGHTS, "Where to write the weights (.npz).")
    flags.DEFINE_string("data_dir", DEFAULT_DIR, "Fashion-MNIST IDX files.")
    flags.DEFINE_integer("steps", 3000, "Adam steps.")
    flags.DEFINE_integer("batch_size", 64, "Images per step.")
    flags.DEFINE_float("learning_rate", 1e-3, "Peak Adam rate (cosine decay to 0).")
    flags.DEFINE_float("kl_weight", 1e-4, "Weight of the KL term (LDM's KL-f8 used 1e-6).")
    flags.DEFINE_integer("seed", 0, "Seeds the parameters, the data order and the posterior draws.")
    app.run(main)
