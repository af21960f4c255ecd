"""Dry run: compile a config's sharded training step ahead of time, without data; report its cost.

  python main.py --config=configs/fashion_mnist.py --dry_run [--device_memory_gb=16]

Builds the model, the optimizer and the jitted step exactly as training would, lowers it on
abstract inputs (jax.ShapeDtypeStruct with the training shardings) and compiles it for the
devices at hand. Reports the parameter count, the compiled executable's per-device memory
(arguments + outputs - donated aliases + temporaries) and FLOPs per step per device (XLA's
cost analysis is per device), for the step with and without per-cluster gradients when the
MTL method uses them, and one reverse step of the evaluation's sampler (plus, for latents,
the decode of a sampling batch). On a CPU host the figures are those of a CPU compilation: an
estimate of what an accelerator's compiler will do, and the report says so. XLA's cost
analysis counts the body of a loop once, so with train.microbatch_loop='scan' the FLOPs come
from a second compilation of the same step unrolled (the memory stays that of the scan).
With --topology the TPU compiler compiles for a slice (tpu_topology.py) and the report adds
its peak, generated code, rematerialised instructions and a roofline bound on the step time;
or XLA's GPU compiler for an H100 / H200 target without the GPU (gpu_topology.py: memory).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffmtl import autoencoder, sharding
from diffmtl.autoencoder import codec as codec_lib
from diffmtl.clustering import from_config as clustering_from_config
from diffmtl.errors import UserError
from diffmtl.evaluation import evaluator
from diffmtl.training import experiment, gpu_topology, tpu_topology

GIB = 2**30
STEPS_PROBED = 1000  # Steps whose needs_task_grads decide which compiled steps are measured.


class StepCost(NamedTuple):
    """Per-device figures of one compiled training step."""

    memory_bytes: int  # arguments + outputs - aliased (donated) + temporaries
    temp_bytes: int
    flops: float
    peak_bytes: int = 0  # the compiler's own peak, where it reports one (TPU)
    code_bytes: int = 0  # generated code, resident in device memory on an accelerator
    bytes_accessed: float = 0.0  # XLA's count of memory traffic (same loop caveat as flops)
    optimal_seconds: float = 0.0  # the compiler's own time estimate, where it gives one (> 0)
    remat: int = 0  # instructions the TPU compiler rematerialised to fit (recompute)

    @property
    def resident_bytes(self) -> int:
        """What stays in memory between steps: arguments + outputs - aliases (state, batch)."""
        return self.memory_bytes - self.temp_bytes


class DryRunReport(NamedTuple):
    backend: str
    num_devices: int
    num_params: int
    per_device_batch: int
    weighted_step: StepCost | None  # one gradient of the weighted loss, if the method uses it
    task_grads_step: StepCost | None  # per-cluster gradients, if the method uses them
    task_grads_bytes: int  # k x parameter gradients in mtl.grad_dtype (0 if unused)
    decode: StepCost | None = None  # latents: decoding one sampling batch (evaluation only)
    sampling_batch: int = 0  # sampling.batch_size: the global batch of sampling and decode
    sampling: StepCost | None = None  # one reverse step of the sampler (evaluation)
    sampling_steps: int = 0  # sampling.num_steps: how often a sampling batch runs it
    note: str = ""  # e.g. placeholder intervals in place of a missing TAS file
    topology: str = ""  # a TPU slice or GPU target compiled for (--topology), else ''
    device_kind: str = ""
    hbm_gib: float = 0.0  # per chip (TPU) or what jax may allocate per GPU, for the fit line

    @property
    def peak_bytes(self) -> int:
        """What the run needs per device: training or evaluation, whichever is larger."""
        return max(self.needs_bytes())

    @property
    def training_steps(self) -> list[StepCost]:
        return [s for s in (self.weighted_step, self.task_grads_step) if s]

    def needs_bytes(self) -> tuple[int, int]:
        """(training, evaluation) per device: the training steps' peak (the compiler's where it
        gives one), and the training state left resident while sampling plus the sampling
        step's own peak (evaluation runs between steps; the state is not freed)."""
        train = max(s.peak_bytes or s.memory_bytes for s in self.training_steps)
        if not self.sampling:
            return train, 0
        resident = max(s.resident_bytes for s in self.training_steps)
        return train, resident + (self.sampling.peak_bytes or self.sampling.memory_bytes)

    def _time_line(self, cost: StepCost) -> str:
        """Roofline lower bound on the topology's chips, and the compiler's estimate if any."""
        bound = tpu_topology.roofline_seconds(self.topology, cost.flops, cost.bytes_accessed)
        line = f"  >= {bound * 1e3:.3g} ms per step on {self.device_kind} (roofline bound)"
        if cost.optimal_seconds > 0:
            line += f"; the compiler's estimate {cost.optimal_seconds * 1e3:.3g} ms"
        return line

    def lines(self) -> list[str]:
        estimate = "" if self.backend != "cpu" else " (compiled for CPU: an estimate only)"
        if self.topology and self.backend == "tpu":
            estimate = f" ({self.topology}, {self.device_kind}: the TPU compiler's own figures)"
        elif self.topology:
            estimate = (
                f" ({self.topology}, {self.device_kind}: XLA's GPU compiler without a device;"
                " memory only, not autotuned)"
            )
        out = [
            f"backend: {self.backend} x {self.num_devices} devices{estimate}",
            f"parameters: {self.num_params:,}",
            f"batch per device: {self.per_device_batch}",
        ]
        steps = [
            ("weighted-loss step", self.weighted_step),
            ("per-cluster-gradient step", self.task_grads_step),
            (f"sampling step, batch {self.sampling_batch} (evaluation, x{self.sampling_steps})",
             self.sampling),
            (f"decode of {self.sampling_batch} samples (evaluation)", self.decode),
        ]  # fmt: skip
        for name, cost in steps:
            if not cost:
                continue
            out.append(_step_line(name, cost))
            if self.backend == "tpu" and self.topology:  # GPU targets give no FLOPs
                out.append(self._time_line(cost))
            if cost is self.task_grads_step:
                grads = self.task_grads_bytes / GIB
                out.append(f"per-cluster gradients [k, ...]: {grads:.3f} GiB")
        if self.note:
            out.append(f"note: {self.note}")
        if self.hbm_gib:
            train, evaluation = (b / GIB for b in self.needs_bytes())
            need = max(train, evaluation)
            verdict = "fits" if need <= self.hbm_gib else "does NOT fit"
            where = "of HBM per chip"
            if self.backend != "tpu":
                where = f"per GPU (jax's share, {gpu_topology.MEM_FRACTION_VARIABLE})"
            out.append(
                f"{verdict} in {self.hbm_gib:.3g} GiB {where}: needs {need:.2f} GiB "
                f"(training {train:.2f}, evaluation {evaluation:.2f})"
            )
        return out


def _step_line(name: str, cost: StepCost) -> str:
    extra = ""
    if cost.peak_bytes:
        extra += f", compiler's peak {cost.peak_bytes / GIB:.3f} GiB"
    if cost.code_bytes:
        extra += f", code {cost.code_bytes / 2**20:.1f} MiB"
    if cost.remat:
        extra += f", {cost.remat} rematerialised instructions"
    work = f", {cost.flops / 1e9:.2f} GFLOPs" if cost.flops else ", no FLOP count from XLA"
    if cost.bytes_accessed:
        work += f", {cost.bytes_accessed / 1e9:.2f} GB accessed"
    return (
        f"{name}: {cost.memory_bytes / GIB:.3f} GiB per device "
        f"({cost.temp_bytes / GIB:.3f} GiB temporaries{extra}){work}"
        + (" per device" if cost.flops else "")
    )


def _analysis(compiled) -> dict:
    analysis = compiled.cost_analysis()
    return dict((analysis[0] if isinstance(analysis, list | tuple) else analysis) or {})


# An instruction the rematerialisation pass cloned: "%name.remat = ..." or "name.remat2 = ...".
_REMAT = re.compile(r"^\s*(?:ROOT )?%?[\w.\-]*\.remat\d*[\w.\-]* = ", re.M)


def _decode_cost(config, mesh) -> StepCost:
    """Decoding one sampling batch of latents to pixels, as evaluation does (per device)."""
    replicated, batch = sharding.replicated(mesh), sharding.batch_sharding(mesh, 0)
    params = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
        autoencoder.params_template(config),
    )
    codec = codec_lib.Codec(
        autoencoder.make_autoencoder(config),
        params,
        config.data.image_size,
        autoencoder.input_size(config),
        config.autoencoder.scale_factor,
        mesh,
    )
    shape = (config.sampling.batch_size, *autoencoder.latent_shape(config))
    z = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=batch)
    return _compiled_cost(codec.decode_fn, params, z)


def _compiled_cost(step, *args, flops_step=None) -> StepCost:
    """Memory of `step` on `args`; FLOPs and bytes of `flops_step` (the same step with its loops
    unrolled) if given. On TPU also the rematerialised instructions (the compiler recomputes to
    fit the chip's HBM; their cost shows in FLOPs, not in memory)."""
    device = _first_device(args)
    try:
        compiled = step.lower(*args).compile()
    except Exception as e:  # the TPU compiler refuses a program that does not fit
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        kind = device.device_kind if device else "the device"
        raise UserError(does_not_fit(str(e), kind)) from e
    memory = compiled.memory_analysis()
    counted = compiled if flops_step is None else flops_step.lower(*args).compile()
    analysis = _analysis(counted)
    platform = device.platform if device else ""
    remat = len(_REMAT.findall(compiled.as_text())) if platform == "tpu" else 0
    total = (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes
        + memory.temp_size_in_bytes
    )
    # XLA:CPU's "peak" is not a device's (tiny config: 0.3 MiB of a 9 MiB step): TPU/GPU only.
    peak = int(getattr(memory, "peak_memory_in_bytes", 0) or 0) if platform != "cpu" else 0
    code = int(getattr(memory, "generated_code_size_in_bytes", 0) or 0)
    return StepCost(
        int(total),
        int(memory.temp_size_in_bytes),
        float(analysis.get("flops", 0.0)),
        peak,
        code,
        float(analysis.get("bytes accessed", 0.0)),
        max(float(analysis.get("optimal_seconds", 0.0)), 0.0),  # -1: no estimate
        remat,
    )


# The TPU compiler's refusal: "... HLO temporaries (19.40G) exceeds available HBM (15.75G)".
_EXCEEDS = re.compile(
    r"(HLO temporaries|memory required[^(]*)\(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)"
)
FIXES = (
    "lower train.batch_size, raise train.num_microbatches, shard with mesh.fsdp, or track "
    "fewer train.ema_profiles"
)


def does_not_fit(message: str, device_kind: str) -> str:
    """One line from the compiler's RESOURCE_EXHAUSTED: the chip, what is needed and the fixes."""
    found = _EXCEEDS.search(message)
    if not found:
        detail = next((ln for ln in message.splitlines() if "exceeds" in ln), message[:200])
        return f"does not fit on {device_kind}: {detail.strip()}; {FIXES}"
    need, have = float(found.group(2)), float(found.group(3))
    return (
        f"does not fit on {device_kind}: needs {need:.2f} GiB of {have:.2f} GiB "
        f"({need - have:.2f} GiB over); {FIXES}"
    )


def _first_device(args):
    """A device the program is compiled for: of the first argument with a sharding (or None)."""
    leaves = [a for a in jax.tree.leaves(args) if getattr(a, "sharding", None) is not None]
    return next(iter(leaves[0].sharding.device_set)) if leaves else None


def _sampling_cost(config, exp, params) -> StepCost:
    """One reverse step of the evaluation's sampler on a sampling batch (per device): the
    model's forward (twice the batch under classifier-free guidance) and the update."""
    sample = evaluator.experiment_sampler(config, exp)
    spec = sharding.batch_sharding(exp.mesh, 0)
    n = config.sampling.batch_size
    key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    x = jax.ShapeDtypeStruct((n, *exp.example_shape), jnp.float32, sharding=spec)
    keys = jax.ShapeDtypeStruct((n, *key.shape), key.dtype, sharding=spec)
    labels = None
    if config.data.num_classes:
        labels = jax.ShapeDtypeStruct((n,), jnp.int32, sharding=spec)
    i = jax.ShapeDtypeStruct((), jnp.int32)
    return _compiled_cost(sample.reverse_step, params, x, keys, labels, i)


def _unrolled_steps(config, devices, layout, used) -> dict:
    """with_task_grads -> the step unrolled, for each used step whose scan runs > 1 iteration."""
    m, k, _ = layout
    looped = [f for f in used if (k if f else m) > 1]
    if config.train.microbatch_loop != "scan" or not looped:
        return {}
    unrolled = config.copy_and_resolve_references()
    unrolled.train.microbatch_loop = "unroll"
    exp = experiment.build_experiment(unrolled, devices, with_data=False)
    return {f: exp.train_step[f] for f in looped}


def abstract_inputs(config, exp: experiment.Experiment) -> tuple:
    """(state, batch) as sharded ShapeDtypeStructs: what the train step is lowered on."""
    state = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
        jax.eval_shape(exp.state_initializer, jax.random.PRNGKey(0)),
        exp.state_sharding,
    )
    m, k, n = exp.layout
    shard = sharding.batch_sharding(exp.mesh, 2)
    batch = {"x0": jax.ShapeDtypeStruct((m, k, n, *exp.example_shape), jnp.float32, sharding=shard)}
    if config.data.name == "latents" and config.autoencoder.sample_posterior:
        batch["x0_std"] = batch["x0"]
    if config.data.num_classes:
        batch["label"] = jax.ShapeDtypeStruct((m, k, n), jnp.int32, sharding=shard)
    return state, batch


def random_inputs(config, exp: experiment.Experiment, seed: int = 0) -> dict[str, jax.Array]:
    """A concrete batch of abstract_inputs' shapes, on its sharding (benchmarks and tests time or
    run the real step without data): x0 [M, k, N, *example] ~ N(0, 1); x0_std (sampled latent
    posteriors) ~ U(0, 0.1); label [M, k, N] uniform over the classes."""
    _, abstract = abstract_inputs(config, exp)
    rng = np.random.default_rng(seed)
    batch = {"x0": rng.normal(size=abstract["x0"].shape).astype(np.float32)}
    if "x0_std" in abstract:
        batch["x0_std"] = rng.uniform(0, 0.1, abstract["x0_std"].shape).astype(np.float32)
    if "label" in abstract:
        labels = rng.integers(0, config.data.num_classes, abstract["label"].shape)
        batch["label"] = labels.astype(np.int32)
    return {k: jax.device_put(v, abstract[k].sharding) for k, v in batch.items()}


def used_steps(config, exp: experiment.Experiment) -> set[bool]:
    """Which of the two steps (with_task_grads) the loop runs: the method decides per step."""
    return {exp.method.needs_task_grads(s, config.mtl) for s in range(STEPS_PROBED)}


def dry_run(config, devices=None, topology: str = "", sampling: bool = True) -> DryRunReport:
    """Compiles the config's steps on abstract inputs and measures them; no data is read.
    topology: a TPU slice's (tpu_topology.py) or GPU target's (gpu_topology.py) name: compile
    for its compile-only devices instead.
    sampling: also the evaluation's sampling step (tests of the training steps skip it)."""
    target = gpu_topology if gpu_topology.is_gpu(topology) else tpu_topology
    if topology:
        devices = target.devices(topology)
    exp = experiment.build_experiment(config, devices, with_data=False)
    state, batch = abstract_inputs(config, exp)
    k = exp.layout[1]
    num_params = sum(math.prod(p.shape) for p in jax.tree.leaves(state.params))
    used = used_steps(config, exp)
    unrolled = _unrolled_steps(config, devices, exp.layout, used)
    cost = {
        f: _compiled_cost(exp.train_step[f], state, batch, flops_step=unrolled.get(f)) for f in used
    }
    grad_bytes = np.dtype(config.mtl.grad_dtype).itemsize
    first = exp.mesh.devices.flat[0]
    return DryRunReport(
        backend=first.platform,
        num_devices=exp.mesh.size,
        num_params=num_params,
        per_device_batch=config.train.batch_size // sharding.num_batch_shards(exp.mesh),
        weighted_step=cost.get(False),
        task_grads_step=cost.get(True),
        task_grads_bytes=k * num_params * grad_bytes if True in used else 0,
        decode=_decode_cost(config, exp.mesh) if config.data.name == "latents" else None,
        sampling_batch=config.sampling.batch_size,
        sampling=_sampling_cost(config, exp, state.ema_params) if sampling else None,
        sampling_steps=config.sampling.num_steps,
        note=clustering_from_config.placeholder_reason(config),
        topology=topology,
        device_kind=first.device_kind if topology else "",
        hbm_gib=target.usable_gib(topology) if topology else 0.0,
    )


def check_fits(report: DryRunReport, device_memory_gb: float) -> None:
    """UserError when the run's per-device memory (training or evaluation, needs_bytes)
    exceeds `device_memory_gb` (0: no check)."""
    if device_memory_gb and report.peak_bytes > device_memory_gb * GIB:
        train, evaluation = (b / GIB for b in report.needs_bytes())
        raise UserError(
            f"the run needs {report.peak_bytes / GIB:.2f} GiB per device, more than "
            f"--device_memory_gb={device_memory_gb:g} (training {train:.2f}, evaluation "
            f"{evaluation:.2f}): {FIXES}"
        )
