# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # diffmtl quickstart: a diffusion model as a multi-task learner
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffmtl/diffmtl/blob/main/notebooks/diffmtl_quickstart.ipynb)
#
# "Addressing Negative Transfer in Diffusion Models" (ANT, Go et al., NeurIPS 2023) reads
# diffusion training as multi-task learning: denoising at timestep t is task t. Tasks far apart
# in noise level pull the shared network in conflicting directions (negative transfer). ANT
# groups the T timesteps into k contiguous intervals with an exact dynamic program and treats each
# interval as one task for a multi-task-learning (MTL) method. This notebook walks through that
# story with diffmtl's own API on Fashion-MNIST:
#
# 1. timesteps as tasks, and their noise levels;
# 2. interval clustering by the DP, for two costs, and the cost against k;
# 3. vanilla and ANT-Nash-MTL trained side by side, with live per-cluster losses and MTL weights;
# 4. samples and FID_FMNIST of both;
# 5. a task-affinity (TAS) heatmap of the ANT model;
# 6. where to go from here (FFHQ, ImageNet, TPU pods).
#
# **Size.** `SIZE` in the next code cell sets the budget of everything: `'colab'` (the default,
# sized for a free Colab GPU; 10-15 minutes by our estimate, not measured: docs/quickstart.md),
# `'cpu'` (the `make demo` budget per run) or `'ci'` (the test suite runs the notebook at this
# size).

# %%
# Colab only: fetch diffmtl, its pinned requirements and the Fashion-MNIST files (the Debian /
# Ubuntu package `dataset-fashion-mnist`; nothing else is downloaded, no weights, no datasets).
# The pins the runtime does not need are left out so Colab's own kernel and TensorFlow stay.
import importlib.util
import os
import subprocess
import sys

# Where your copy of diffmtl is hosted (a fork, a mirror: the environment variable overrides).
REPO_URL = os.environ.get("DIFFMTL_REPO_URL", "https://github.com/diffmtl/diffmtl")

if "google.colab" in sys.modules and not os.path.exists("/content/diffmtl"):

    def sh(command: str) -> None:
        print("$", command)
        subprocess.run(command, shell=True, check=True)

    sh(f"git clone -q --depth 1 {REPO_URL} /content/diffmtl")
    sh("apt-get update -qq && apt-get install -y -q dataset-fashion-mnist > /dev/null")
    dev_only = {"ipykernel", "nbclient", "nbformat", "jupytext", "pytest", "pytest-xdist", "ruff"}
    if importlib.util.find_spec("tensorflow"):  # Colab's TensorFlow serves clu's writers.
        dev_only |= {"tensorflow-cpu", "tensorboard"}
    with open("/content/diffmtl/requirements.txt") as f:
        pins = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    with open("/content/runtime-requirements.txt", "w") as f:
        f.write("\n".join(p for p in pins if p.split("==")[0] not in dev_only) + "\n")
    pip = f"{sys.executable} -m pip install -q"  # The kernel's own interpreter.
    sh(f"{pip} -r /content/runtime-requirements.txt")
    if subprocess.run("nvidia-smi", shell=True, capture_output=True).returncode == 0:
        sh(f"{pip} 'jax[cuda12]==0.10.2' -c /content/diffmtl/requirements.txt")  # GPU JAX
    sh(f"{pip} --no-deps -e /content/diffmtl")
if "google.colab" in sys.modules:
    os.chdir("/content/diffmtl")
elif os.path.basename(os.getcwd()) == "notebooks":
    os.chdir("..")  # Run from the repository root: configs/ and the committed weights.
sys.path.insert(0, os.getcwd())

# %%
SIZE = os.environ.get("DIFFMTL_NOTEBOOK_SIZE", "colab")  # 'colab', 'cpu' or 'ci'.
WORKDIR = os.environ.get("DIFFMTL_NOTEBOOK_WORKDIR", "workdirs/notebook")

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from IPython import display  # noqa: E402

from configs import fashion_mnist  # noqa: E402
from diffmtl import clustering  # noqa: E402
from diffmtl.analysis import plots, tas_command  # noqa: E402
from diffmtl.analysis.sweep import override  # noqa: E402
from diffmtl.clustering import from_config  # noqa: E402
from diffmtl.diffusion import schedule  # noqa: E402
from diffmtl.evaluation import evaluator  # noqa: E402
from diffmtl.train import train_and_evaluate  # noqa: E402

# Config fields each size changes (dotted names, as on main.py's command line).
SIZES = {
    "ci": {  # The tests' three-convolution model for 6 steps: every cell runs, nothing is learned.
        "model.name": "toy", "model.base_channels": 8,
        "train.batch_size": 40, "train.num_microbatches": 1, "train.num_train_steps": 6,
        "train.warmup_steps": 0, "mtl.nash_mtl.update_every": 2,
        "log_every_steps": 2, "checkpoint_every_steps": 3, "task_gradient_cosine_every_steps": 0,
        "sampling.num_steps": 5, "sampling.batch_size": 16, "sampling.grid_size": 16,
        "eval.num_samples": 16, "eval.num_reference": 64, "eval.batch_size": 16,
        "eval.val_num_images": 8, "eval.val_num_timesteps": 10,
    },
    "cpu": {  # The make-demo budget: 320 steps of the default UNet.
        "checkpoint_every_steps": 160, "log_every_steps": 10,
    },
    "colab": {  # About 10x the CPU budget, FID on 2000 DDIM-50 samples; 1, 4 or 8 devices.
        "train.num_train_steps": 3000, "checkpoint_every_steps": 1500, "log_every_steps": 50,
        "train.batch_size": 80, "train.num_microbatches": 1,
        "sampling.num_steps": 50, "sampling.batch_size": 400,
        "eval.num_samples": 2000, "eval.batch_size": 400,
    },
}  # fmt: skip
# The task-affinity grid: timesteps, images, exact inner products (no sketch) at these sizes.
TAS_SIZES = {"ci": (6, 8), "cpu": (20, 32), "colab": (50, 64)}
print(f"size {SIZE!r}: {SIZES[SIZE]}; devices {jax.devices()}")

# %% [markdown]
# ## 1. Timesteps are tasks
#
# The forward process x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps has T = 1000 noise levels.
# Their signal-to-noise ratio SNR(t) = abar_t / (1 - abar_t) spans about 20 e-folds: denoising at
# t = 10 (almost clean) and at t = 990 (almost pure noise) are very different tasks.

# %%
config = fashion_mnist.get_config()
abar = schedule.schedule_alphas_cumprod(config)
log_snr = schedule.log_snr(abar)
T = config.diffusion.num_timesteps

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(np.arange(T), log_snr)
ax.set(xlabel="timestep t (task)", ylabel="log SNR(t)", title="Linear schedule, T = 1000")
plt.show()

# %% [markdown]
# ## 2. Interval clustering by dynamic programming
#
# ANT's clusters minimise a sum of interval costs over all partitions of 0..T-1 into k contiguous
# intervals; `clustering.interval_clustering` solves it exactly (O(k T^2), milliseconds). The
# cost decides what "similar tasks" means: equal spreads of timesteps (`timestep_cost`) or of
# log-SNR (`log_snr_cost`, our default). The cost against k shows diminishing returns.

# %%
K = config.clustering.k
costs = {
    "log-SNR cost": clustering.log_snr_cost(log_snr),
    "timestep cost": clustering.timestep_cost(T),
}
fig, axes = plt.subplots(1, 3, figsize=(15, 3.5), layout="constrained")
for ax, (name, cost) in zip(axes[:2], costs.items(), strict=True):
    intervals = np.asarray(clustering.interval_clustering(cost, K))
    plots.draw_clusters(ax, intervals, log_snr, title=f"{name}: k = {K}")
    print(f"{name}:\n{from_config.boundaries_table(intervals, log_snr)}\n")
    curve = clustering.cost_versus_k(cost, 10)
    plots.draw_cost_versus_k(axes[2], curve / curve[0], label=name)
axes[2].set(ylabel="optimal cost / cost at k = 1")
axes[2].legend()
plt.show()

# %% [markdown]
# ## 3. Vanilla and ANT, side by side
#
# Both runs share the model, data order, seed and step budget (`configs/fashion_mnist.py`). The
# vanilla variant has one cluster (k = 1, the plain DDPM loss). ANT (the default config) draws
# every batch with B/k examples per log-SNR cluster, computes the loss vector [k] inside one
# jitted step, and combines the clusters with Nash-MTL (the ANT row docs/results.md supports).
# `train_and_evaluate` is what `main.py` runs; `on_log` sees every logged set of scalars.


# %%
class LivePlot:
    """Per-cluster training losses and MTL weights of a run, redrawn at every log."""

    def __init__(self, title: str):
        self.title, self.steps, self.rows = title, [], []
        self.handle = display.display(display.HTML(f"<b>{title}</b>: starting"), display_id=True)

    def __call__(self, step: int, scalars: dict) -> None:
        self.steps.append(step)
        self.rows.append(scalars)
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3))
        for key, ax in (("task_losses", left), ("loss_weights", right)):
            names = sorted(k for k in scalars if k.startswith(f"train/{key}/"))
            for name in names:
                ax.plot(self.steps, [row[name] for row in self.rows], label=name.split("/")[-1])
            ax.set(xlabel="step", title=f"{self.title}: {key.replace('_', ' ')}")
        left.set_yscale("log")
        right.legend(fontsize=7)
        if self.handle is None:  # Not in a notebook (the .py run as a script): a line instead.
            print(f"{self.title} step {step}: loss {scalars['train/loss']:.4f}")
        else:
            self.handle.update(fig)
        plt.close(fig)


def sized(variant: str):
    return override(fashion_mnist.get_config(variant), SIZES[SIZE])


runs = {}
for variant in ("vanilla", "ant"):
    workdir = os.path.join(WORKDIR, SIZE, variant)
    train_and_evaluate(sized(variant), workdir, on_log=LivePlot(variant))
    runs[variant] = workdir

# %% [markdown]
# ## 4. Samples and FID_FMNIST
#
# Each run ends with an evaluation of its EMA parameters: FID against the Fashion-MNIST test
# split in the feature space of a small classifier we trained and committed (FID_FMNIST; README:
# Evaluation), precision, recall and the validation loss per timestep. Same sampler noise in
# both runs, so the grids are paired sample by sample.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 6))
for ax, (variant, workdir) in zip(axes, runs.items(), strict=True):
    ax.imshow(plt.imread(os.path.join(workdir, "samples.png")), cmap="gray")
    ax.set_title(f"{variant}\n{evaluator.read_headline(workdir)}", fontsize=8)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 5. Task affinity
#
# TAS(t1, t2) is the cosine of the gradients of the losses at t1 and t2 on the same images and
# noise, averaged over the run's checkpoints (the paper's Figure 2). Nearby timesteps agree;
# distant ones conflict. Gradient clusters (`clustering.method='gradient'`) partition exactly
# this matrix.

# %%
grid, num_images = TAS_SIZES[SIZE]
tas_config = override(sized("ant"), {
    "analysis.tas_num_timesteps": grid, "analysis.tas_num_images": num_images,
    "analysis.tas_projection_dim": 0, "analysis.tas_chunk_size": 2,
})  # fmt: skip
print(tas_command.task_affinity_of_workdir(tas_config, runs["ant"]))
tas = np.load(os.path.join(runs["ant"], "tas.npy"))
fig, ax = plt.subplots(figsize=(4.5, 4))
image = ax.imshow(tas, cmap="RdBu_r", vmin=-1, vmax=1, origin="lower")
ax.set(xlabel="t2", ylabel="t1", title=f"TAS of the ANT run ({grid}-point grid)")
fig.colorbar(image)
plt.show()
print("gradient clusters:", clustering.interval_clustering(clustering.gradient_cost(tas), K))

# %% [markdown]
# ## 6. Next steps
#
# - The same runs from a shell: `python main.py --config=configs/fashion_mnist.py
#   --workdir=/tmp/ant` and `--config=configs/fashion_mnist.py:vanilla`; any field can be
#   overridden, e.g. `--config.mtl.method=uw` (15 MTL methods, README: MTL methods).
# - The paper's settings: `configs/ffhq.py` (FFHQ 256, ADM UNet, ANT-UW), `configs/celebahq.py`,
#   the latent `configs/ffhq_ldm.py`, and the authors' own DiT on ImageNet 256,
#   `configs/imagenet256_dit.py` (class-conditional, classifier-free guidance).
# - Before paying for accelerators: `python main.py --config=configs/ffhq.py --dry_run
#   --device_memory_gb=16` compiles the step and reports memory and FLOPs per device.
# - On a TPU pod, every host runs `python main.py --config=configs/ffhq.py
#   --workdir=gs://bucket/ffhq --multihost` (README: Running on TPU / GPU).
# - Reproduction of the paper's tables at CPU scale: `docs/results.md`.
