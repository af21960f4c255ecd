"""Dry run: compile a config's sharded training step ahead of time, without data; report its cost.

  python main.py --config=configs/fashion_mnist.py --dry_run [--device_memory_gb=16]

Builds the model, the optimizer and the jitted step exactly as training would, lowers it on
abstract inputs (jax.ShapeDtypeStruct with the training shardings) and compiles it for the
devices at hand. Reports the parameter count, the compiled executable's per-device memory
(arguments + outputs - donated aliases + temporaries) and FLOPs per step per device (XLA's
cost analysis is per device), for the step with and without per-cluster gradients when the
MTL method uses them. On a CPU host the figures are those of a CPU compilation: an estimate of
what an accelerator's compiler will do, and the report says so. XLA's cost analysis counts the
body of a loop once, so with train.microbatch_loop='scan' the FLOPs come from a second
compilation of the same step unrolled (the memory stays that of the scan).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffmtl import autoencoder, sharding
from diffmtl.autoencoder import codec as codec_lib
from diffmtl.clustering import from_config as clustering_from_config
from diffmtl.errors import UserError
from diffmtl.training import experiment, tpu_topology

GIB = 2**30
STEPS_PROBED = 1000  # Steps whose needs_task_grads decide which compiled steps are measured.


class StepCost(NamedTuple):
    """Per-device figures of one compiled training step."""

    memory_bytes: int  # arguments + outputs - aliased (donated) + temporaries
    temp_bytes: int
    flops: float
    peak_bytes: int = 0  # the compiler's own peak, where it reports one (TPU)
    code_bytes: int = 0  # generated code, resident in device memory on an accelerator


class DryRunReport(NamedTuple):
    backend: str
    num_devices: int
    num_params: int
    per_device_batch: int
    weighted_step: StepCost | None  # one gradient of the weighted loss, if the method uses it
    task_grads_step: StepCost | None  # per-cluster gradients, if the method uses them
    task_grads_bytes: int  # k x parameter gradients in mtl.grad_dtype (0 if unused)
    decode: StepCost | None = None  # latents: decoding one sampling batch (evaluation only)
    decode_batch: int = 0  # its global batch (sampling.batch_size)
    note: str = ""  # e.g. placeholder intervals in place of a missing TAS file
    topology: str = ""  # a TPU topology compiled for (--topology), else ''
    device_kind: str = ""
    hbm_gib: float = 0.0  # per chip, for the fit line (TPU topologies)

    @property
    def peak_bytes(self) -> int:
        return max(s.memory_bytes for s in (self.weighted_step, self.task_grads_step) if s)

    def lines(self) -> list[str]:
        estimate = "" if self.backend != "cpu" else " (compiled for CPU: an estimate only)"
        if self.topology:
            estimate = f" ({self.topology}, {self.device_kind}: the TPU compiler's own figures)"
        out = [
            f"backend: {self.backend} x {self.num_devices} devices{estimate}",
            f"parameters: {self.num_params:,}",
            f"batch per device: {self.per_device_batch}",
        ]
        if self.weighted_step:
            out.append(_step_line("weighted-loss step", self.weighted_step))
        if self.task_grads_step:
            out.append(_step_line("per-cluster-gradient step", self.task_grads_step))
            out.append(f"per-cluster gradients [k, ...]: {self.task_grads_bytes / GIB:.3f} GiB")
        if self.decode:
            out.append(
                _step_line(f"decode of {self.decode_batch} samples (evaluation)", self.decode)
            )
        if self.note:
            out.append(f"note: {self.note}")
        if self.hbm_gib:
            need = max(s.peak_bytes or s.memory_bytes for s in (self.weighted_step,
                       self.task_grads_step) if s) / GIB  # fmt: skip
            verdict = "fits" if need <= self.hbm_gib else "does NOT fit"
            out.append(f"{verdict} in {self.hbm_gib:g} GiB of HBM per chip: needs {need:.2f} GiB")
        return out


def _step_line(name: str, cost: StepCost) -> str:
    extra = ""
    if cost.peak_bytes:
        extra += f", compiler's peak {cost.peak_bytes / GIB:.3f} GiB"
    if cost.code_bytes:
        extra += f", code {cost.code_bytes / 2**20:.1f} MiB"
    return (
        f"{name}: {cost.memory_bytes / GIB:.3f} GiB per device "
        f"({cost.temp_bytes / GIB:.3f} GiB temporaries{extra}), {cost.flops / 1e9:.2f} GFLOPs "
        "per device"
    )


def _flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
    return float(analysis.get("flops", 0.0))


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


def _compiled_cost(step, state, batch, flops_step=None) -> StepCost:
    """Memory of `step`; FLOPs of `flops_step` (the same step with its loops unrolled) if given."""
    try:
        compiled = step.lower(state, batch).compile()
    except Exception as e:  # the TPU compiler refuses a program that does not fit
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        detail = next((ln for ln in str(e).splitlines() if "exceeds" in ln), str(e)[:200])
        raise UserError(f"does not fit on the chip: {detail.strip()}") from e
    memory = compiled.memory_analysis()
    flops = _flops(compiled if flops_step is None else flops_step.lower(state, batch).compile())
    total = (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes
        + memory.temp_size_in_bytes
    )
    peak = int(getattr(memory, "peak_memory_in_bytes", 0) or 0)
    code = int(getattr(memory, "generated_code_size_in_bytes", 0) or 0)
    return StepCost(int(total), int(memory.temp_size_in_bytes), flops, peak, code)


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


def dry_run(config, devices=None, topology: str = "") -> DryRunReport:
    """Compiles the config's steps on abstract inputs and measures them; no data is read.
    topology: a TPU slice's name (tpu_topology.py): compile for its chips instead."""
    if topology:
        devices = tpu_topology.devices(topology)
    exp = experiment.build_experiment(config, devices, with_data=False)
    state, batch = abstract_inputs(config, exp)
    k = exp.layout[1]
    num_params = sum(math.prod(p.shape) for p in jax.tree.leaves(state.params))
    used = used_steps(config, exp)
    unrolled = _unrolled_steps(config, devices, exp.layout, used)
    cost = {f: _compiled_cost(exp.train_step[f], state, batch, unrolled.get(f)) for f in used}
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
        decode_batch=config.sampling.batch_size,
        note=clustering_from_config.placeholder_reason(config),
        topology=topology,
        device_kind=first.device_kind if topology else "",
        hbm_gib=tpu_topology.hbm_gib(topology) if topology else 0.0,
    )


def check_fits(report: DryRunReport, device_memory_gb: float) -> None:
    """UserError when the step's per-device memory exceeds `device_memory_gb` (0: no check)."""
    if device_memory_gb and report.peak_bytes > device_memory_gb * GIB:
        raise UserError(
            f"the training step needs {report.peak_bytes / GIB:.2f} GiB per device, more than "
            f"--device_memory_gb={device_memory_gb:g}: lower train.batch_size, raise "
            "train.num_microbatches, or shard parameters with mesh.fsdp"
        )
