"""Evaluation of EMA params: samples, FID / IS / precision / recall, validation loss.

`Evaluator` is built once per run (feature network, reference statistics, sampler and the fixed
validation problems) and called at steps of training or on a restored checkpoint:
  python main.py --mode=sample   --config=... --workdir=...   # samples_<n>x<H>x<W>x<C>.npz + PNG
  python main.py --mode=evaluate --config=... --workdir=...   # metrics.json, newest checkpoint
The reference statistics come from eval.reference_path or, when empty, from eval.num_reference
images of the data's eval.reference_split, written once to the workdir and reused.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from etils import epath

from diffmtl.data import from_config as data_from_config
from diffmtl.data import images
from diffmtl.diffusion import guidance, samplers, schedule
from diffmtl.evaluation import validation_loss
from diffmtl.evaluation.metrics import features as features_lib
from diffmtl.evaluation.metrics import frechet, sample_quality


def experiment_model_fn(config, exp) -> guidance.ModelFn:
    """The run's model as samplers call it: guided as config.sampling says (dropout off)."""
    cfg = config.sampling
    return guidance.guided_model_fn(
        exp.model, cfg.guidance_scale, cfg.guidance_channels, config.data.num_classes
    )


def experiment_sampler(config, exp, model_fn: guidance.ModelFn | None = None):
    """The config's sampler (method, num_steps, eta, classifier-free guidance) for the run; ddpm
    uses a learned variance. model_fn replaces experiment_model_fn(config, exp) (the NTG's
    composite of two parameter sets, say)."""
    cfg = config.sampling
    ancestral = cfg.method == "ddpm"
    num_classes = config.data.num_classes
    return samplers.make_sampler(
        model_fn or experiment_model_fn(config, exp),
        exp.diffusion,
        cfg.num_steps,
        1.0 if ancestral else cfg.eta,
        exp.example_shape,
        exp.mesh,
        cfg.clip_denoised,
        learned_variance=ancestral and exp.diffusion.learn_sigma,
        num_classes=num_classes,
    )


def generate_samples(sampler, params, num_samples: int, sampling_config, codec=None) -> np.ndarray:
    """Samples 0..n-1 of sampling.seed, in batches of sampling.batch_size: uint8 [n, H, W, C]
    pixels (latents decoded batch-wise by `codec`, the experiment's, when it has one)."""
    cfg = sampling_config
    decode = None if codec is None else codec.decode
    return samplers.generate(sampler, params, num_samples, cfg.batch_size, cfg.seed, decode)


def read_headline(workdir: str) -> str:
    """The headline line that write_final stored in <workdir>/metrics.json."""
    return json.loads((epath.Path(workdir) / "metrics.json").read_text())["headline"]


def reference_path(config, workdir: str) -> str:
    """eval.reference_path, or the workdir file the Evaluator writes when that is empty."""
    cfg = config.eval
    if cfg.reference_path:
        return cfg.reference_path
    name = f"reference_{cfg.feature_network}_{config.data.name}_{cfg.reference_split}.npz"
    return os.path.join(workdir, name)


def load_or_make_reference(config, extract, workdir: str, source=None) -> dict[str, np.ndarray]:
    """The reference statistics; made from the data (and saved) when no file is configured.

    source: the eval.reference_split source if the caller has it (else opened here when needed).
    """
    path = reference_path(config, workdir)
    if not config.eval.reference_path and not epath.Path(path).exists():
        source = source or data_from_config.make_source(config, config.eval.reference_split)
        feats = sample_quality.reference_features(source, extract, config.eval.num_reference)
        if jax.process_index() == 0:
            epath.Path(workdir).mkdir(parents=True, exist_ok=True)
            frechet.save_reference(path, feats, split=config.eval.reference_split)
        mu, sigma = frechet.feature_statistics(feats)
        return {"features": feats, "mu": mu, "sigma": sigma}
    return frechet.load_reference(path)


class Evaluator:
    """Sample quality and validation loss of params at a step; see the module docstring."""

    def __init__(self, config, exp, workdir: str):
        cfg = config.eval
        self.config, self.workdir, self.boundaries = config, workdir, exp.boundaries
        self.codec = exp.codec
        self.net = features_lib.make_feature_network(cfg)
        self.extract = features_lib.make_extractor(self.net, exp.mesh, cfg.batch_size)
        held_out = data_from_config.make_source(config, cfg.reference_split)
        self.reference = load_or_make_reference(config, self.extract, workdir, held_out)
        self.sample = experiment_sampler(config, exp)
        index = sample_quality.reference_indices(held_out.num_examples, cfg.val_num_images, 1)
        held_out_examples = held_out.examples(index)
        self.val_grid, self.val_losses = validation_loss.make_validation_loss(
            exp.model,
            exp.diffusion,
            exp.mesh,
            held_out_examples["x0"],
            cfg.val_num_timesteps,
            config.seed,
            held_out_examples.get("label"),
        )
        self.log_snr = schedule.log_snr(schedule.schedule_alphas_cumprod(config))

    def samples(self, params, num_samples: int) -> np.ndarray:
        """Samples 0..n-1 of sampling.seed from `params`: uint8 [n, H, W, C]."""
        return generate_samples(self.sample, params, num_samples, self.config.sampling, self.codec)

    def quality(self, samples: np.ndarray) -> dict[str, float]:
        """fid, inception_score(_std), precision, recall of uint8 samples [n, H, W, C]."""
        k = self.config.eval.precision_recall_k
        return sample_quality.sample_quality(self.extract, self.reference, samples, k)

    def __call__(self, params, num_samples: int) -> tuple[dict[str, float], np.ndarray]:
        """(metrics, samples): eval/{fid, inception_score, precision, recall}, val/loss[...]."""
        samples = self.samples(params, num_samples)
        metrics = {f"eval/{name}": value for name, value in self.quality(samples).items()}
        losses = self.val_losses(params)
        metrics["val/loss"] = float(np.mean(losses))
        per_cluster = validation_loss.cluster_means(self.val_grid, losses, self.boundaries)
        for i, value in enumerate(per_cluster):
            metrics[f"val/loss/cluster_{i}"] = float(value)
        self.last_val_losses = losses
        return metrics, samples

    def write_final(self, metrics: dict[str, float], step: int) -> str:
        """Writes metrics.json and validation_loss.png (process 0); returns the JSON's path."""
        path = os.path.join(self.workdir, "metrics.json")
        if jax.process_index() == 0:
            record = {
                "step": step,
                "headline": self.headline(metrics),
                "feature_network": self.net.name,
                "num_samples": self.config.eval.num_samples,
                "sampler": self.config.sampling.to_dict(),
                "metrics": metrics,
                "validation_loss": {
                    "timesteps": self.val_grid.tolist(),
                    "loss": self.last_val_losses.tolist(),
                },
            }
            epath.Path(path).write_text(json.dumps(record, indent=2))
            validation_loss.plot_validation_loss(
                os.path.join(self.workdir, "validation_loss.png"),
                self.val_grid,
                self.last_val_losses,
                self.boundaries,
                self.log_snr,
            )
        return path

    def headline(self, metrics: dict[str, float]) -> str:
        """One line for the console, e.g. 'FID_FMNIST 23.4 (1000 samples, ddim-50) ...'."""
        cfg = self.config.sampling
        name = features_lib.METRIC_NAMES[self.net.name]
        nan = float("nan")
        return (
            f"{name} {metrics['eval/fid']:.2f} ({self.config.eval.num_samples} samples, "
            f"{cfg.method}-{cfg.num_steps}), precision {metrics.get('eval/precision', nan):.3f}, "
            f"recall {metrics.get('eval/recall', nan):.3f}, "
            f"validation loss {metrics['val/loss']:.4f}"
        )


def write_sample_files(directory: str, samples: np.ndarray, grid_size: int) -> str:
    """Writes samples_<n>x<H>x<W>x<C>.npz (uint8 NHWC as arr_0, the ADM evaluator's layout) and
    a PNG grid of the first `grid_size`; returns the .npz path."""
    shape = "x".join(str(d) for d in samples.shape)
    path = os.path.join(directory, f"samples_{shape}.npz")
    if jax.process_index() == 0:
        epath.Path(directory).mkdir(parents=True, exist_ok=True)
        with epath.Path(path).open("wb") as f:
            np.savez(f, samples)
        images.save_png(path[: -len(".npz")] + ".png", images.image_grid(samples[:grid_size]))
    return path
