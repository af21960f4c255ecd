"""Dry run: ahead-of-time compilation without data; figures, memory check, every shipped config."""

import glob
import importlib.util
import math
import os
import re
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from flax import traverse_util

from conftest import make_tiny_config
from diffmtl.clustering import from_config as clustering_from_config
from diffmtl.errors import UserError
from diffmtl.training import dry_run, experiment
from main_runs import config_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "[!_]*.py")))


def _report(cost_gib: float) -> dry_run.DryRunReport:
    cost = dry_run.StepCost(int(cost_gib * dry_run.GIB), 0, 1.0)
    return dry_run.DryRunReport("cpu", 1, 10, 4, cost, None, 0)


def test_check_fits_names_the_flag_and_the_fixes():
    dry_run.check_fits(_report(1.5), 2.0)
    dry_run.check_fits(_report(1e6), 0.0)  # 0: no check
    with pytest.raises(UserError, match=r"needs 2.50 GiB per device, more than --device_memory"):
        dry_run.check_fits(_report(2.5), 2.0)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["equal", "pcgrad"])
def test_tiny_config_report_matches_the_real_state(method, devices):
    config = make_tiny_config()
    config.mtl.method = method
    report = dry_run.dry_run(config, devices)
    state = experiment.initial_state(config, experiment.build_experiment(config, devices))
    num_params = sum(math.prod(p.shape) for p in jax.tree.leaves(state.params))
    assert report.num_params == num_params and report.num_devices == 4
    assert report.per_device_batch == config.train.batch_size // 4
    step = report.task_grads_step if method == "pcgrad" else report.weighted_step
    assert step.flops > 0 and step.memory_bytes >= step.temp_bytes > 0
    if method == "pcgrad":  # PCGrad runs only the per-cluster-gradient step
        assert report.weighted_step is None
        assert report.task_grads_bytes == config.clustering.k * num_params * 4
    else:
        assert report.task_grads_step is None and report.task_grads_bytes == 0
    assert "compiled for CPU: an estimate only" in report.lines()[0]
    # Oracle for the sampling step (per device): the model's forward alone on one device's
    # share of a sampling batch, compiled here, plus the update's elementwise work (< 10%).
    exp = experiment.build_experiment(config, devices, with_data=False)
    n = config.sampling.batch_size
    x = jax.ShapeDtypeStruct((n // len(devices), *exp.example_shape), np.float32)
    t = jax.ShapeDtypeStruct(x.shape[:1], np.int32)
    forward = jax.jit(lambda p, x, t: exp.model.apply({"params": p}, x, t, train=False))
    forward_flops = dry_run._analysis(forward.lower(state.params, x, t).compile())["flops"]
    assert forward_flops <= report.sampling.flops <= 1.1 * forward_flops
    assert report.sampling_steps == config.sampling.num_steps
    assert any(line.startswith(f"sampling step, batch {n}") for line in report.lines())


def test_the_evaluation_needs_the_resident_state_plus_the_sampling_peak():
    """needs_bytes' stated arithmetic on hand-made costs: training = the steps' peak (the
    compiler's where given), evaluation = the larger step's resident bytes + sampling's peak."""
    gib = dry_run.GIB
    weighted = dry_run.StepCost(10 * gib, 4 * gib, 1.0, peak_bytes=9 * gib)
    per_cluster = dry_run.StepCost(8 * gib, 1 * gib, 1.0)  # resident 7 GiB, no compiler peak
    sampling = dry_run.StepCost(3 * gib, 2 * gib, 1.0)
    report = dry_run.DryRunReport("tpu", 4, 10, 4, weighted, per_cluster, 0, sampling=sampling)
    assert report.needs_bytes() == (9 * gib, 7 * gib + 3 * gib)
    report = report._replace(sampling=None, topology="v5e:2x2", device_kind="v5e", hbm_gib=9.5)
    assert report.needs_bytes() == (9 * gib, 0)
    assert report.lines()[-1] == (
        "fits in 9.5 GiB of HBM per chip: needs 9.00 GiB (training 9.00, evaluation 0.00)"
    )


def test_rematerialised_instructions_are_counted_from_the_compiled_text():
    hlo = """
  %fusion.12 = f32[8]{0} fusion(f32[8]{0} %p), kind=kLoop
  %fusion.12.remat = f32[8]{0} fusion(f32[8]{0} %p), kind=kLoop
  %convolution.3.remat2 = f32[8]{0} convolution(%a, %b)
  ROOT %copy.remat.1 = f32[8]{0} copy(%fusion.12.remat)
  %add = f32[8]{0} add(%fusion.12.remat, %convolution.3.remat2)
"""
    assert len(dry_run._REMAT.findall(hlo)) == 3


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


# Fields that change only data (cluster boundaries, file paths, evaluation sizes), not the
# compiled training step: configs that differ from a compiled one only here need no compile.
SAME_STEP_FIELDS = ("data.dir", "clustering.method", "eval.num_reference")


def _same_step_as(config, other) -> bool:
    flat, other_flat = (
        {k: v for k, v in c.items() if k not in SAME_STEP_FIELDS}
        for c in (_flatten(config), _flatten(other))
    )
    return flat == other_flat


def _flatten(config):
    return {".".join(k): v for k, v in traverse_util.flatten_dict(config.to_dict()).items()}


COMPILED = [p for p in CONFIGS if not p.endswith("celebahq.py")]


@pytest.mark.slow
@pytest.mark.parametrize("path", COMPILED, ids=os.path.basename)
def test_every_shipped_config_lowers_at_its_real_model_size(path, devices, tmp_path):
    """Every step the loop would run traces and lowers to one sharded program at the real model
    size (shape and sharding errors show here; XLA's compile, which the tiny-config tests
    exercise, takes minutes at this size on CPU). Gradient clusters get a smooth stand-in for
    the vanilla run's TAS file they need."""
    config = _load(path)
    if config.clustering.method == "gradient":
        t = np.arange(config.diffusion.num_timesteps)
        np.save(tmp_path / "tas.npy", np.exp(-np.abs(t[:, None] - t[None, :]) / 100.0))
        config.clustering.tas_path = str(tmp_path / "tas.npy")
    m, k = config.train.num_microbatches, config.clustering.k
    config.train.batch_size = m * k * len(devices)  # the smallest valid batch
    exp = experiment.build_experiment(config, devices, with_data=False)
    state, batch = dry_run.abstract_inputs(config, exp)
    for with_task_grads in dry_run.used_steps(config, exp):
        lowered = exp.train_step[with_task_grads].lower(state, batch)
        assert "stablehlo" in lowered.as_text(dialect="stablehlo")[:20000]
    # The benchmarks' concrete stand-in is that batch: same keys, shapes, dtypes and shardings.
    concrete = dry_run.random_inputs(config, exp)
    chex.assert_trees_all_equal_shapes_and_dtypes(concrete, batch)
    assert all(concrete[key].sharding == batch[key].sharding for key in batch)
    if "label" in batch:
        labels = np.asarray(concrete["label"])
        assert labels.min() >= 0 and labels.max() < config.data.num_classes


def test_the_other_shipped_configs_share_a_compiled_step(devices):
    """celebahq.py trains ffhq.py's step (its UW already; only the clusters' cost differs): the
    compile above covers it; here its clusters and experiment are built without compiling."""
    celebahq = _load(os.path.join(ROOT, "configs", "celebahq.py"))
    assert _same_step_as(celebahq, _load(os.path.join(ROOT, "configs", "ffhq.py")))
    assert set(CONFIGS) - set(COMPILED) == {os.path.join(ROOT, "configs", "celebahq.py")}
    exp = experiment.build_experiment(celebahq, devices, with_data=False)
    assert exp.boundaries.shape == (celebahq.clustering.k, 2)


def test_main_dry_run_fails_in_one_line_when_the_step_cannot_fit(tmp_path):
    env = dict(os.environ, XLA_FLAGS="", TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "main.py", *config_flags(), "--dry_run"]
    cmd.append("--device_memory_gb=0.0001")
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert re.search(r"^parameters: [0-9,]+$", result.stdout, re.M)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "more than --device_memory_gb=0.0001" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_fsdp_divides_the_per_device_state(devices):
    config = make_tiny_config()
    config.model.base_channels = 64  # parameters, not the batch, dominate the resident state
    config.mesh.data, config.mesh.fsdp = 1, 4
    sharded = dry_run.dry_run(config, devices).weighted_step
    config.mesh.data, config.mesh.fsdp = 4, 1
    replicated = dry_run.dry_run(config, devices).weighted_step
    resident = [c.memory_bytes - c.temp_bytes for c in (sharded, replicated)]
    assert resident[0] < 0.5 * resident[1]  # params, EMA and Adam moments: about a quarter


@pytest.mark.slow
def test_scan_steps_report_the_flops_of_every_iteration(devices):
    """XLA counts a loop body once: the scan step's FLOPs must still be those of all k passes."""
    reports = {}
    for loop in ("scan", "unroll"):
        config = make_tiny_config()
        config.mtl.method = "pcgrad"
        config.train.microbatch_loop = loop
        config.clustering.k, config.train.num_microbatches = 2, 2  # two loops of two passes
        config.train.batch_size = 16
        reports[loop] = dry_run.dry_run(config, devices).task_grads_step
    assert reports["scan"].flops == pytest.approx(reports["unroll"].flops, rel=0.02)


def test_gradient_clusters_dry_run_on_placeholder_intervals_without_their_tas_file(tmp_path):
    """The TAS file changes the intervals' values, not the step's shapes or cost: a dry run
    without it uses k uniform intervals and says so in one line; training still refuses."""
    config = make_tiny_config()
    config.clustering.method = "gradient"
    config.clustering.tas_path = str(tmp_path / "not_yet.npy")
    boundaries = clustering_from_config.cluster_boundaries(config, placeholder=True)
    np.testing.assert_array_equal(
        boundaries, clustering_from_config.intervals.uniform_boundaries(1000, config.clustering.k)
    )
    reason = clustering_from_config.placeholder_reason(config)
    assert "not_yet.npy" in reason and "uniform intervals" in reason
    with pytest.raises(UserError, match="TAS file .*not_yet.npy does not exist"):
        clustering_from_config.cluster_boundaries(config)
    np.save(tmp_path / "not_yet.npy", np.eye(1000, dtype=np.float32))
    assert clustering_from_config.placeholder_reason(config) == ""


def test_a_program_the_compiler_refuses_ends_in_one_line_with_the_chip_and_the_shortfall():
    refusal = (
        "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space "
        "hbm. Used 19.40G of 15.75G hbm.\nRan out of memory on HBM, the total memory required "
        "for HLO temporaries (19.40G) exceeds available HBM (15.75G).\n"
    )
    assert dry_run.does_not_fit(refusal, "TPU v5 lite") == (
        "does not fit on TPU v5 lite: needs 19.40 GiB of 15.75 GiB (3.65 GiB over); "
        + dry_run.FIXES
    )
    other = "RESOURCE_EXHAUSTED: program exceeds the chip's scoped memory\nmore"
    assert dry_run.does_not_fit(other, "TPU v5").startswith(
        "does not fit on TPU v5: RESOURCE_EXHAUSTED: program exceeds"
    )
