"""Trains the FID_FMNIST feature network and writes its weights (one-off; the result is committed).

  python tools/train_fmnist_classifier.py [--out=diffmtl/evaluation/metrics/weights/...npz]

Fixed seed and data order; Adam with a cosine-decayed rate, random horizontal flips. Prints the
test accuracy and the checksum to paste into fmnist_classifier.WEIGHTS_SHA256.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from diffmtl.data.fashion_mnist import DEFAULT_DIR, FashionMNIST
from diffmtl.evaluation.metrics import params_io
from diffmtl.evaluation.metrics.fmnist_classifier import (
    WEIGHTS_PATH,
    FashionMNISTClassifier,
    accuracy,
)

FLAGS = flags.FLAGS


def train(train_images, train_labels, epochs: int, batch_size: int, seed: int) -> dict:
    """Returns the trained params; deterministic for a given seed (on one machine)."""
    model = FashionMNISTClassifier()
    key = jax.random.PRNGKey(seed)
    params = model.init(key, train_images[:1])["params"]
    steps_per_epoch = len(train_images) // batch_size
    schedule = optax.cosine_decay_schedule(1e-3, epochs * steps_per_epoch)
    tx = optax.adam(schedule)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y, step_key):
        flip_key, dropout_key = jax.random.split(step_key)
        flip = jax.random.bernoulli(flip_key, 0.5, (x.shape[0], 1, 1, 1))
        x = jnp.where(flip, x[:, :, ::-1], x)

        def loss_fn(p):
            logits = model.apply({"params": p}, x, train=True, rngs={"dropout": dropout_key})[1]
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(train_images))
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            step_key = jax.random.fold_in(key, epoch * steps_per_epoch + i)
            params, opt_state, loss = step(
                params, opt_state, train_images[idx], train_labels[idx].astype(np.int32), step_key
            )
        print(f"epoch {epoch + 1}/{epochs}: last loss {float(loss):.4f}", flush=True)
    return jax.device_get(params)


def main(argv):
    del argv
    train_set = FashionMNIST(FLAGS.data_dir, "train")
    test_set = FashionMNIST(FLAGS.data_dir, "test")
    train_images = train_set.images(np.arange(train_set.num_examples))
    params = train(train_images, train_set.labels, FLAGS.epochs, FLAGS.batch_size, FLAGS.seed)
    test_images = test_set.images(np.arange(test_set.num_examples))
    digest = params_io.save_params(FLAGS.out, params)
    result = {"test_accuracy": accuracy(params, test_images, test_set.labels), "sha256": digest}
    print(json.dumps({"out": FLAGS.out, **result}))


if __name__ == "__main__":
    flags.DEFINE_string("out", WEIGHTS_PATH, "Where to write the weights (.npz).")
    flags.DEFINE_string("data_dir", DEFAULT_DIR, "Fashion-MNIST IDX files.")
    flags.DEFINE_integer("epochs", 8, "Passes over the 60000 training images.")
    flags.DEFINE_integer("batch_size", 128, "Images per step.")
    flags.DEFINE_integer("seed", 0, "Seeds the parameters, the data order and dropout.")
    app.run(main)
