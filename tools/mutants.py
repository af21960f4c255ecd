"""Mutation check: single-line semantic mutations of core modules, each applied alone in a
temporary copy of the checkout, with the tests that should catch it. A mutation that no test
catches is a bug the suite would let through.

  python -m tools.mutants                      # all, prints killed / survived and a summary
  python -m tools.mutants --only=ema_swapped,pcgrad_fixed_order

Not part of CI (each mutation reruns test files: about half a minute each here). Its last
result, with the date and command, is in docs/testing.md; every mutation of the list should be
killed. When a real bug is fixed, add the mutation that reintroduces it.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile

from absl import app, flags

from tools.checkout import copy_checkout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    old: str  # a line (or part of one) that occurs exactly once in the file
    new: str
    tests: tuple[str, ...]  # test files that should fail with it


M = Mutation
ORACLES = "tests/test_oracles.py"
MUTATIONS = (
    # The six the probe found surviving (tests/test_oracles.py catches them now).
    M("pcgrad_fixed_order", "diffmtl/mtl/methods/pcgrad.py",
      "return jax.vmap(lambda kk: jax.random.permutation(kk, num_tasks))(keys)",
      "return jnp.tile(jnp.arange(num_tasks), (num_tasks, 1))", (ORACLES,)),
    M("guidance_channels_of_output", "diffmtl/diffusion/guidance.py",
      "combine(cond, uncond, scale, channels or x.shape[-1])",
      "combine(cond, uncond, scale, channels or cond.shape[-1])", (ORACLES,)),
    M("sampler_keeps_unclipped_eps", "diffmtl/diffusion/samplers.py",
      "eps = (x - jnp.sqrt(abar[i]) * x0) / jnp.sqrt(1.0 - abar[i])", "eps = eps", (ORACLES,)),
    M("labels_div_then_mod", "diffmtl/diffusion/samplers.py",
      "return (np.asarray(indices) % num_classes)",
      "return (np.asarray(indices) // num_classes % num_classes)", (ORACLES,)),
    M("flips_by_batch_position", "diffmtl/data/pipeline.py",
      "flips.append(mask[index : index + take.size])", "flips.append(mask[: take.size])",
      (ORACLES,)),
    M("ema_swapped", "diffmtl/training/steps.py",
      "lambda e, p: decay * e + (1 - decay) * p", "lambda e, p: decay * p + (1 - decay) * e",
      (ORACLES,)),
    # Clustering.
    M("dp_last_minimum", "diffmtl/clustering/dp.py", "m = int(np.argmin(candidates))",
      "m = len(candidates) - 1 - int(np.argmin(candidates[::-1]))", ("tests/test_clustering.py",)),
    M("dp_interval_start", "diffmtl/clustering/dp.py", "intervals.append((m + 1, end))",
      "intervals.append((m, end))", ("tests/test_clustering.py",)),
    M("dp_first_row", "diffmtl/clustering/dp.py", "table[0] = cost[0]", "table[0] = cost[1]",
      ("tests/test_clustering.py",)),
    M("stratified_range", "diffmtl/tasks.py", "high = boundaries[:, 1:] + 1",
      "high = boundaries[:, 1:]", ("tests/test_tasks.py",)),
    M("width_factor_without_k", "diffmtl/tasks.py",
      "return widths * boundaries.shape[0] / num_timesteps", "return widths / num_timesteps",
      ("tests/test_mtl_library.py",)),
    M("task_losses_sum", "diffmtl/tasks.py", "return jnp.mean(per_example_loss, axis=axes)",
      "return jnp.sum(per_example_loss, axis=axes)", ("tests/test_tasks.py",)),
    # MTL methods.
    M("pcgrad_sum_axis", "diffmtl/mtl/methods/pcgrad.py", "return coeffs.sum(axis=0) / k, count",
      "return coeffs.sum(axis=1) / k, count", ("tests/test_mtl.py", ORACLES)),
    M("pcgrad_conflict_sign", "diffmtl/mtl/methods/pcgrad.py", "conflict = (dots < 0) &",
      "conflict = (dots > 0) &", ("tests/test_mtl.py",)),
    M("upgrad_mean_axis", "diffmtl/mtl/methods/upgrad.py", "return per_task.mean(axis=0)",
      "return per_task.mean(axis=1)", ("tests/test_mtl.py", ORACLES)),
    M("uw_weight_half", "diffmtl/mtl/methods/uncertainty.py",
      "return 0.5 * jnp.exp(-s) / s.shape[0]",
      "return jnp.exp(-s) / s.shape[0]", ("tests/test_mtl.py",)),
    M("cagrad_rescale", "diffmtl/mtl/methods/cagrad.py", "/ (1.0 + c**2)", "/ (1.0 + c)",
      ("tests/test_mtl.py", ORACLES)),
    M("nash_no_fallback", "diffmtl/mtl/methods/nash.py",
      "alpha = jnp.where(ok, alpha, state.alpha)",
      "alpha = alpha", ("tests/test_mtl.py",)),
    M("imtl_g_raw_pinv", "diffmtl/mtl/methods/imtl_g.py", "v = jnp.where(regular, scaled, pinv)",
      "v = pinv", (ORACLES,)),  # the defect fixed in round 3: tiny gradients lost
    M("equal_weights_half", "diffmtl/mtl/methods/equal.py",
      "jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)",
      "jnp.full((num_tasks,), 0.5 / num_tasks, jnp.float32)", ("tests/test_mtl.py",)),
    # Models against the reference frameworks' committed outputs, and the posterior sample.
    M("dit_modulate_scale", "diffmtl/models/dit.py",
      "return x * (1 + scale[:, None, :]) + shift[:, None, :]",
      "return x * scale[:, None, :] + shift[:, None, :]", ("tests/test_dit.py",)),
    M("vae_std_exponent", "diffmtl/autoencoder/kl.py",
      "jnp.exp(0.5 * jnp.clip(log_var, -30.0, 20.0))", "jnp.exp(jnp.clip(log_var, -30.0, 20.0))",
      ("tests/test_autoencoder.py",)),
    M("posterior_variance", "diffmtl/training/steps.py", "return mean + std * eps(keys)",
      "return mean + std * std * eps(keys)", (ORACLES,)),
    # Diffusion.
    M("q_sample_variance", "diffmtl/diffusion/schedule.py",
      "return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise",
      "return jnp.sqrt(abar) * x0 + (1.0 - abar) * noise", ("tests/test_diffusion.py",)),
    M("p2_exponent", "diffmtl/diffusion/schedule.py",
      "return 1.0 / (p2_k + snr_values) ** p2_gamma", "return 1.0 / (p2_k + snr_values)",
      ("tests/test_diffusion.py",)),
    M("min_snr_inverted", "diffmtl/diffusion/schedule.py",
      "return np.minimum(1.0, min_snr_gamma / snr_values)",
      "return np.maximum(1.0, min_snr_gamma / snr_values)", ("tests/test_diffusion.py",)),
    M("learned_variance_ends_swapped", "diffmtl/diffusion/schedule.py",
      "return frac * log_beta + (1.0 - frac) * log_tilde",
      "return frac * log_tilde + (1.0 - frac) * log_beta",
      ("tests/test_sampling.py", ORACLES)),
    M("ddim_no_clip", "diffmtl/diffusion/samplers.py", "x0 = jnp.clip(x0, -1.0, 1.0)",
      "x0 = jnp.clip(x0, -2.0, 2.0)", (ORACLES,)),
    M("sigma_without_posterior_factor", "diffmtl/diffusion/samplers.py",
      "sigma = eta * np.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))",
      "sigma = eta * np.sqrt((1 - abar_prev) / (1 - abar))", ("tests/test_sampling.py",)),
    M("respacing_skips_zero", "diffmtl/diffusion/samplers.py",
      "np.linspace(0, num_timesteps - 1", "np.linspace(1, num_timesteps - 1",
      ("tests/test_sampling.py",)),
    M("guidance_from_cond", "diffmtl/diffusion/guidance.py",
      "guided = uncond[..., :channels] + scale", "guided = cond[..., :channels] + scale",
      ("tests/test_dit.py", ORACLES)),
    # Data, EMA, evaluation.
    M("ema_warmup", "diffmtl/training/train_state.py",
      "return jnp.minimum(max_decay, (1.0 + step) / (10.0 + step))",
      "return jnp.minimum(max_decay, (1.0 + step) / (2.0 + step))", (ORACLES,)),
    M("no_flips", "diffmtl/data/pipeline.py", ".random(num_examples) < 0.5",
      ".random(num_examples) < 0.0", ("tests/test_image_folder.py", ORACLES)),
    M("epoch_order_ignores_epoch", "diffmtl/data/pipeline.py",
      "default_rng([seed, epoch]).permutation", "default_rng([seed, 0]).permutation",
      ("tests/test_input_pipeline.py",)),
    M("frechet_trace_sign", "diffmtl/evaluation/metrics/frechet.py",
      "np.trace(sigma2) - 2.0 * trace_sqrt", "np.trace(sigma2) + 2.0 * trace_sqrt",
      ("tests/test_metrics.py",)),
    M("knn_counts_self", "diffmtl/evaluation/metrics/precision_recall.py",
      "k + 1)[0][:, k]", "k + 1)[0][:, k - 1]", ("tests/test_metrics.py",)),
)  # fmt: skip


def apply(mutation: Mutation, root: str) -> None:
    """Applies `mutation` to the copy at `root`; ValueError unless `old` occurs exactly once."""
    path = os.path.join(root, mutation.path)
    with open(path) as f:
        text = f.read()
    if text.count(mutation.old) != 1:
        raise ValueError(f"{mutation.name}: {mutation.old!r} occurs {text.count(mutation.old)}x")
    with open(path, "w") as f:
        f.write(text.replace(mutation.old, mutation.new))


def run(mutation: Mutation) -> bool:
    """True when a test fails with the mutation applied (killed)."""
    with tempfile.TemporaryDirectory() as root:
        copy_checkout(root)
        apply(mutation, root)
        env = {
            **os.environ,
            "JAX_COMPILATION_CACHE_DIR": os.path.join(ROOT, ".pytest_cache", "jax"),
        }
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider",
             *mutation.tests],
            cwd=root, capture_output=True, text=True, env=env,
        )  # fmt: skip
        return result.returncode != 0


def main(argv):
    del argv
    chosen = [m for m in MUTATIONS if not FLAGS.only or m.name in FLAGS.only]
    survived = []
    for mutation in chosen:
        killed = run(mutation)
        print(
            f"{'killed  ' if killed else 'SURVIVED'} {mutation.name}: {mutation.path}", flush=True
        )
        if not killed:
            survived.append(mutation.name)
    print(f"{len(chosen) - len(survived)} killed, {len(survived)} survived of {len(chosen)}")
    sys.exit(1 if survived else 0)


if __name__ == "__main__":
    FLAGS = flags.FLAGS
    flags.DEFINE_list("only", [], "Run only these mutations (names).")
    app.run(main)
