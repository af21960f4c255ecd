"""The jitted step: device-count and micro-batch invariance, both gradient paths, FLOPs per device.
(The MTL methods' steps and loss-lowering runs are in test_mtl_steps.py.)

Tolerances: parameters after two AdamW steps agree to 1e-5 absolute (float32 reduction order
differs between layouts; measured differences are about 1e-8).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmtl import models, mtl, tasks
from diffmtl.data import pipeline as input_pipeline
from diffmtl.training import experiment, programs, steps
from train_steps import assert_same_training, config_for, run_steps


@pytest.fixture(scope="module")
def reference(devices):
    """One device, one micro-batch, gradient of the weighted loss."""
    return run_steps(config_for(), devices[:1])


def test_four_devices_equal_one_device(devices, reference):
    assert_same_training(run_steps(config_for(), devices), reference)


@pytest.mark.slow
def test_five_microbatches_equal_one(devices, reference):
    assert_same_training(run_steps(config_for(5, "unroll"), devices[:1]), reference)


@pytest.mark.slow
def test_scan_microbatches_on_four_devices_equal_one_device(devices, reference):
    assert_same_training(run_steps(config_for(5, "scan"), devices), reference)


def test_per_cluster_gradients_give_the_equal_weighting_update(devices, reference):
    """Equal weighting of per-cluster gradients [k, ...] == gradient of the mean loss."""
    assert_same_training(run_steps(config_for(), devices, with_task_grads=True), reference)


def task_gradients_on(devices, config):
    """The per-cluster gradients [k, ...] and task losses [k] of the first step's batch."""
    exp = experiment.build_experiment(config, devices)
    state = experiment.initial_state(config, exp)
    state = state.replace(params=jax.tree.map(lambda p: p + 0.01, state.params))  # Non-zero output.
    batch = next(input_pipeline.GlobalBatchIterator(exp.source, 0, exp.layout, exp.mesh))
    loss_fn = steps.make_per_example_loss(exp.model, exp.diffusion, exp.mesh)

    @jax.jit
    def grads(state, batch):
        t, noise, keys = steps.draw_noise_and_timesteps(state, batch["x0"].shape, exp.mesh)
        loop = config.train.microbatch_loop
        return steps.task_gradients(loss_fn, state.params, (batch, t, noise, keys), loop)

    return jax.device_get(grads(state, batch))


def test_task_gradients_do_not_depend_on_the_device_count(devices):
    """The per-cluster gradients every gradient-based MTL method consumes are the same on 4
    devices and on 1, so each method's update is too (test_mtl.py tests the methods as functions
    of them; test_mtl_steps.py runs Nash-MTL, the stateful one, on both)."""
    config = config_for()
    (four, four_losses), (one, one_losses) = (
        task_gradients_on(d, config) for d in (devices, devices[:1])
    )
    chex.assert_trees_all_close(four, one, atol=1e-6)
    chex.assert_trees_all_close(four_losses, one_losses, atol=1e-6)
    k = config.clustering.k
    chex.assert_tree_shape_prefix(four, (k,))
    assert not np.allclose(*(np.ravel(jax.tree.leaves(four)[0][i]) for i in (0, k - 1)))


def per_device_flops(config, devices, with_task_grads):
    exp = experiment.build_experiment(config, devices)
    state = experiment.initial_state(config, exp)
    batch = next(input_pipeline.GlobalBatchIterator(exp.source, 0, exp.layout, exp.mesh))
    cost = exp.train_step[with_task_grads].lower(state, batch).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


@pytest.mark.slow
def test_flops_per_device_split_over_devices(devices):
    """Per-device FLOPs: 4 devices do a quarter of 1 device's work, on both gradient paths.
    (32 channels: the convolutions dominate, as in any real model, not the per-parameter work.)"""
    config = config_for()
    config.model.base_channels = 32
    one = per_device_flops(config, devices[:1], False)
    four = per_device_flops(config, devices, False)
    four_task = per_device_flops(config, devices, True)
    assert four / one == pytest.approx(0.25, rel=0.1)
    assert four_task / four < 1.2  # Per-cluster gradients: not replicated compute.


@pytest.mark.slow
def test_task_gradient_cosine_matches_the_jacobian_of_task_losses(devices):
    """The live affinity view equals cosines of rows of d task_losses / d params."""
    config = config_for()
    config.model.dropout = 0.0
    exp = experiment.build_experiment(config, devices)
    state = experiment.initial_state(config, exp)
    state = state.replace(params=jax.tree.map(lambda p: p + 0.01, state.params))  # Non-zero output.
    batch = next(input_pipeline.GlobalBatchIterator(exp.source, 0, exp.layout, exp.mesh))
    cosine = np.asarray(exp.task_gradient_cosine(state, batch))

    t, noise, keys = steps.draw_noise_and_timesteps(state, batch["x0"].shape, exp.mesh)
    loss_fn = steps.make_per_example_loss(exp.model, exp.diffusion, exp.mesh)
    examples = {"x0": batch["x0"][0]}
    jacobian = jax.jit(
        jax.jacrev(lambda p: tasks.task_losses(loss_fn(p, examples, t[0], noise[0], keys[0])))
    )(state.params)
    rows = np.concatenate([np.asarray(j).reshape(5, -1) for j in jax.tree.leaves(jacobian)], 1)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine, rows @ rows.T, atol=1e-4)
    np.testing.assert_allclose(np.diag(cosine), 1.0, atol=1e-5)


@pytest.mark.slow
def test_fsdp_shards_the_state_and_trains_like_data_parallel(devices, reference):
    """mesh 2 (data) x 2 (fsdp): parameters, EMA and Adam moments sharded over fsdp."""
    config = config_for()
    config.mesh.data, config.mesh.fsdp = 2, 2
    exp = experiment.build_experiment(config, devices)
    specs = [s.spec for s in jax.tree.leaves(exp.state_sharding.params)]
    assert sum("fsdp" in spec for spec in specs) > len(specs) // 2
    state = experiment.initial_state(config, exp)
    kernel = max(jax.tree.leaves(state.params), key=lambda p: p.size)
    assert kernel.addressable_shards[0].data.size == kernel.size // 2
    assert_same_training(run_steps(config, devices), reference)


@pytest.mark.slow
def test_bfloat16_compute_tracks_the_float32_step(devices, reference):
    """model.dtype='bfloat16' on 4 devices vs the float32 step on 1: parameters, EMA and Adam stay
    float32; task losses agree to 1e-2 relative; after two AdamW steps (lr 1e-3, so each
    coordinate moves by about 1e-3 per step) parameters agree to 2.5e-3 absolute and to 1e-4
    on average (bf16 gradients flip the sign of only a few tiny coordinates)."""
    config = config_for()
    config.model.dtype = "bfloat16"
    state, metrics = run_steps(config, devices)
    ref_state, ref_metrics = reference
    for tree in (state.params, state.ema_params, state.opt_state):
        assert all(leaf.dtype != jnp.bfloat16 for leaf in jax.tree.leaves(tree))
    np.testing.assert_allclose(metrics["task_losses"], ref_metrics["task_losses"], rtol=1e-2)
    diffs = np.concatenate(
        [
            np.abs(a - b).ravel()
            for a, b in zip(
                jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params), strict=True
            )
        ]
    )
    assert diffs.max() < 2.5e-3 and diffs.mean() < 1e-4, (diffs.max(), diffs.mean())


@pytest.mark.slow
def test_learned_variance_adds_the_vlb_to_every_task_loss(devices):
    """learn_sigma: 2C outputs; at initialisation (output layer zero: eps = 0, v = 0) every task
    loss is the plain one plus (T / 1000) L_vlb > 0; 4 devices equal 1."""
    config = config_for()
    config.diffusion.learn_sigma = True
    _, plain = run_steps(config_for(), devices[:1], num_steps=1)
    state, learned = run_steps(config, devices[:1], num_steps=1)
    exp = experiment.build_experiment(config, devices[:1])
    x = jnp.zeros((1, 28, 28, 1))
    assert models.denoise(exp.model, state.params, x, jnp.zeros((1,), jnp.int32)).shape[-1] == 2
    assert np.all(learned["task_losses"] > plain["task_losses"] + 1e-4)
    assert_same_training(run_steps(config, devices, num_steps=1), (state, learned))


def test_a_retrace_of_the_step_and_a_batch_without_the_cluster_axis_are_caught(devices):
    config = config_for()
    exp = experiment.build_experiment(config, devices[:1])
    make = functools.partial(
        steps.make_train_step, config, exp.model, exp.diffusion, exp.tx, exp.method, exp.mesh
    )
    batch = next(input_pipeline.GlobalBatchIterator(exp.source, 0, exp.layout, exp.mesh))
    chex.clear_trace_counter()
    step = make(False, max_traces=1)
    state = step(experiment.initial_state(config, exp), batch)[0]
    step(state, batch)  # same shapes: no new trace
    half = jax.tree.map(lambda x: x[:, :, : x.shape[2] // 2], batch)
    with pytest.raises(AssertionError, match="traced > 1 times"):
        step(state, half)  # another batch size: a second trace (a re-compile every call)
    flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[3:]), batch)
    with pytest.raises(AssertionError, match="rank"):
        make(False)(state, flat)  # [B, H, W, C]: not the [M, k, N, ...] layout


def test_the_mtl_boundary_checks_the_loss_vector_and_the_update_shapes():
    params = {"w": jnp.zeros((3, 2))}
    transform = mtl.method("uw").make(2, mtl.default_config())
    state = transform.init(params)
    grads = {"w": jnp.ones((2, 3, 2))}
    updates, _ = transform.update(grads, state, params, task_losses=jnp.ones(2))
    chex.assert_trees_all_equal_shapes(updates, params)
    with pytest.raises(AssertionError, match="shape"):
        transform.update(grads, state, params, task_losses=jnp.ones(3))
    with pytest.raises(ValueError, match="mix per-cluster"):
        transform.update({"w": jnp.ones((2, 3, 2)), "b": jnp.ones(2)}, state,
                         {"w": params["w"], "b": jnp.ones(2)}, task_losses=jnp.ones(2))  # fmt: skip


@pytest.mark.parametrize(
    "method,expected", [("equal", [False]), ("nash_mtl", [True, False]), ("pcgrad", [True])]
)
def test_a_run_compiles_the_step_programs_its_method_uses(devices, method, expected):
    config = config_for()
    config.mtl.method = method
    exp = experiment.build_experiment(config, devices[:1])
    assert programs.step_flags(exp, config, 0, 100) == expected
    if method == "nash_mtl":  # a resumed run inside an update period starts with the other
        assert programs.step_flags(exp, config, 1, 20) == [False]


def test_ahead_of_time_programs_step_bitwise_as_the_jitted_ones(devices):
    config = config_for()
    config.mtl.method = "nash_mtl"
    config.task_gradient_cosine_every_steps = 1
    exp = experiment.build_experiment(config, devices[:1])
    batch = next(input_pipeline.GlobalBatchIterator(exp.source, 0, exp.layout, exp.mesh))
    state = experiment.initial_state(config, exp)
    compiled = programs.compile_programs(exp, config, state, batch, 0, 10)
    assert set(compiled.train_step) == {False, True}
    cosine = compiled.task_gradient_cosine(state, batch)
    chex.assert_trees_all_equal(cosine, exp.task_gradient_cosine(state, batch))
    for flag in (True, False):  # each program against its jitted twin, from the same state
        fresh = experiment.initial_state(config, exp)
        ahead = compiled.train_step[flag](experiment.initial_state(config, exp), batch)
        chex.assert_trees_all_equal(ahead, exp.train_step[flag](fresh, batch))


def test_update_norm_is_the_norm_of_the_parameters_change(devices):
    config = config_for()
    exp = experiment.build_experiment(config, devices[:1])
    state = experiment.initial_state(config, exp)
    before = jax.device_get(state.params)
    batch = next(input_pipeline.GlobalBatchIterator(exp.source, 0, exp.layout, exp.mesh))
    state, metrics = exp.train_step[False](state, batch)
    change = jax.tree.map(np.subtract, jax.device_get(state.params), before)
    expected = np.sqrt(sum(np.sum(np.square(c, dtype=np.float64)) for c in jax.tree.leaves(change)))
    assert expected > 0
    np.testing.assert_allclose(metrics["update_norm"], expected, rtol=1e-5)
