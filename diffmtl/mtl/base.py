"""What every MTL method shares: telling the two gradient forms apart and combining them.

A method's update receives either per-cluster gradients (every leaf has a leading task axis
[k, ...]) or one param-shaped gradient of the weighted loss sum_i w_i L_i. The two are told
apart by shape at trace time against `params`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax


def has_task_axis(updates, params, num_tasks: int) -> bool:
    """True when every leaf of `updates` is [k, *param.shape], False when it is param-shaped."""
    if params is None:
        raise ValueError("MTL methods need `params` to tell per-cluster gradients apart")
    pairs = zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True)
    flags = {u.shape == (num_tasks, *p.shape) for u, p in pairs}
    if len(flags) != 1:
        raise ValueError("updates mix per-cluster [k, ...] and param-shaped leaves")
    return flags.pop()


def weighted_sum(task_grads, weights: jax.Array):
    """sum_i w_i g_i over the leading task axis: leaves [k, ...], weights [k] -> leaves [...].

    Accumulated in float32 whatever the dtype of the task gradients (mtl.grad_dtype).
    """

    def combine(g):
        return jnp.tensordot(weights.astype(jnp.float32), g.astype(jnp.float32), axes=1)

    return jax.tree.map(combine, task_grads)


def gram_matrix(task_grads, other_grads=None) -> jax.Array:
    """G[i, j] = <g_i, h_j> summed over leaves [k, ...] (h = other_grads [m, ...], default g)
    -> [k, m] float32.

    Under parameter sharding each leaf's product is a per-shard dot product plus a reduction.
    One float32 dot per leaf: on XLA:CPU it is accurate to ~3e-7 (relative) on a 10^6-entry
    leaf in most programs, but XLA:CPU chose a one-pass accumulation (5e-4 off) for k = 3 with
    Aligned-MTL's eigendecomposition as the consumer (docs/mtl.md, torchjd comparison). A
    two-stage contraction fixes that at 2-4x the time of the product on CPU, so it is not used.
    """
    others = task_grads if other_grads is None else other_grads

    def leaf_gram(g, h):
        flat_g = g.reshape(g.shape[0], -1).astype(jnp.float32)
        flat_h = h.reshape(h.shape[0], -1).astype(jnp.float32)
        return jnp.dot(flat_g, flat_h.T, precision=jax.lax.Precision.HIGHEST)

    pairs = zip(jax.tree.leaves(task_grads), jax.tree.leaves(others), strict=True)
    return sum(leaf_gram(g, h) for g, h in pairs)


def no_metrics(state) -> dict:
    """For methods with no scalars beyond the loss weights (which the step logs for all)."""
    del state
    return {}


def never_needs_task_grads(step: int, mtl_config) -> bool:
    """For methods that only weight the losses: the step takes one gradient of sum_i w_i L_i."""
    del step, mtl_config
    return False


def always_needs_task_grads(step: int, mtl_config) -> bool:
    """For Gram-based methods: per-cluster gradients at every step."""
    del step, mtl_config
    return True


def option(default, allowed: str, check: Callable[[Any], bool], doc: str) -> Any:
    """A field of a method's Options dataclass: its default, its range (`check`, described by
    `allowed`) and its documentation, written here once. The constructor's keyword arguments,
    config.mtl.<name>, the config check and the docs are all read from these fields."""
    return dataclasses.field(
        default=default, metadata={"allowed": allowed, "check": check, "doc": doc}
    )


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of every method's options (frozen dataclasses of `option` fields). Construction
    checks every field: ValueError naming the field, its value and its range."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not field.metadata["check"](value):
                raise ValueError(f"{field.name}={value!r} must be {field.metadata['allowed']}")


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    """The options of a method that has none."""


def option_fields(options_type: type[Options]) -> tuple[dataclasses.Field, ...]:
    """The `option` fields of an Options dataclass, in declaration order."""
    return dataclasses.fields(options_type)


def defaults(options_type: type[Options]) -> dict:
    """{field: default} of an Options dataclass (config.mtl.<name>)."""
    return {f.name: f.default for f in option_fields(options_type)}


def takes_options(options_type: type[Options]) -> Callable[[Callable], Callable]:
    """Turns fn(..., *, options: options_type) into fn(..., **options): each field becomes a
    keyword-only argument with the field's default (the public signature says so, for help()
    and IDEs), checked by building options_type. Why: the defaults live in the dataclass alone,
    so the signature cannot drift from the config and the docs."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def with_options(*args, **options):
            return fn(*args, options=options_type(**options))

        kept = [p for p in inspect.signature(fn).parameters.values() if p.name != "options"]
        added = [
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type
            )
            for f in option_fields(options_type)
        ]
        with_options.__signature__ = inspect.signature(fn).replace(parameters=kept + added)
        del with_options.__wrapped__  # help() and the docs show the signature above, not fn's.
        with_options.Options = options_type
        return with_options

    return decorate


@dataclasses.dataclass(frozen=True)
class Method:
    """An MTL method as the training step, the config and the docs see it.

    constructor(num_tasks, **options) -> the optax transform (the public function, e.g.
      diffmtl.mtl.upgrad; its keyword arguments are the fields of `options`);
    options: the Options dataclass (defaults, ranges, docs; config.mtl.<name>);
    weights: for a Gram-based method, the pure weighting weights(gram [k, k], task_losses [k]
      = None, **options) -> [k] (None for loss-based methods);
    loss_weights(state) -> [k] weights w of the losses (logged; the weighted-loss step takes
      the gradient of sum_i w_i L_i);
    task_grads_on(step, section) -> bool (host side: which compiled step to run; section is
      config.mtl.<name>, read by attribute like the Options);
    metrics(state) -> dict of scalars for TensorBoard;
    clips_updates: the method clips its output (the chain then adds no clip);
    kind: 'gram' (per-cluster gradients, coefficient space) or 'loss' (one backward pass);
    formula, source: one line each (docs); guarantee: the property the method guarantees
    (what "non-conflicting" means for it), one line, or "" if none.
    """

    name: str
    constructor: Callable[..., optax.GradientTransformationExtraArgs]
    loss_weights: Callable[[Any], jax.Array]
    options: type[Options] = NoOptions
    weights: Callable[..., jax.Array] | None = None
    task_grads_on: Callable[[int, Any], bool] = never_needs_task_grads
    metrics: Callable[[Any], dict] = no_metrics
    clips_updates: bool = False
    kind: str = "loss"
    formula: str = ""
    source: str = ""
    guarantee: str = ""
    # (state, log_snr [...]) -> per-example loss weights [...] (continuous UW), or None.
    example_weights: Callable[[Any, jax.Array], jax.Array] | None = None

    def parse(self, mtl_config) -> Options:
        """The method's Options from config.mtl (its section config.mtl.<name>); ValueError
        naming a field out of range."""
        if not option_fields(self.options):
            return self.options()
        return self.options(**mtl_config[self.name].to_dict())

    def make(self, num_tasks: int, mtl_config) -> optax.GradientTransformationExtraArgs:
        """The transform for config.mtl, with its boundary checked (`checked_boundary`)."""
        options = dataclasses.asdict(self.parse(mtl_config))
        return checked_boundary(self.constructor(num_tasks, **options), num_tasks)

    def needs_task_grads(self, step: int, mtl_config) -> bool:
        """Whether step `step` runs the per-cluster-gradient step (host side, every step: it
        reads the config section as is, checked once by `check_config` before training)."""
        section = mtl_config[self.name] if option_fields(self.options) else None
        return self.task_grads_on(step, section)


def checked_boundary(
    transform: optax.GradientTransformationExtraArgs, num_tasks: int
) -> optax.GradientTransformationExtraArgs:
    """`transform` with chex checks of its contract (at trace time: free under jit): task_losses
    [k]; updates per-cluster [k, *param.shape] or param-shaped (has_task_axis); the output
    param-shaped."""

    def update(updates, state, params=None, *, task_losses, **extra):
        chex.assert_shape(task_losses, (num_tasks,))
        has_task_axis(updates, params, num_tasks)  # Raises on any other shape.
        out, state = transform.update(updates, state, params, task_losses=task_losses, **extra)
        chex.assert_trees_all_equal_shapes(out, params)
        return out, state

    return optax.GradientTransformationExtraArgs(transform.init, update)


class GramState(NamedTuple):
    """State of a Gram-based method: the last weights (what the weighted-loss step uses between
    updates), a PRNG key, and the method's own state."""

    weights: jax.Array  # [k]
    key: jax.Array  # [2] uint32
    extra: Any


# weights_fn(gram [k, k], task_losses [k], key, extra) -> (weights [k], extra).
WeightsFn = Callable[[jax.Array, jax.Array, jax.Array, Any], tuple[jax.Array, Any]]


def gram_weighting(
    num_tasks: int,
    weights_fn: WeightsFn,
    extra: Any = (),
    seed: int = 0,
    postprocess: Callable | None = None,
) -> optax.GradientTransformationExtraArgs:
    """The shared path of Gram-based methods: G[i, j] = <g_i, g_j> from the per-cluster
    gradients [k, ...], weights w = weights_fn(G, ...), update sum_i w_i g_i (the parameters are
    read twice: once for G, once for the sum). Given a param-shaped gradient instead (the step
    took the gradient of sum_i w_i L_i with w = the last weights), it passes it through.
    postprocess(updates) runs on either (Nash-MTL's clip).
    """

    def init(params):
        del params
        weights = jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)
        return GramState(weights, jax.random.PRNGKey(seed), extra)

    def update(updates, state, params=None, *, task_losses=None, **unused):
        del unused
        if has_task_axis(updates, params, num_tasks):
            key, use = jax.random.split(state.key)
            losses = jnp.zeros((num_tasks,)) if task_losses is None else task_losses
            weights, new_extra = weights_fn(gram_matrix(updates), losses, use, state.extra)
            state = GramState(weights.astype(jnp.float32), key, new_extra)
            updates = weighted_sum(updates, state.weights)
        if postprocess is not None:
            updates = postprocess(updates)
        return updates, state

    return optax.GradientTransformationExtraArgs(init, update)


def last_weights(state) -> jax.Array:
    """loss_weights of a method whose state keeps the weights it applies (`state.weights`):
    a Gram-based method's last update's, or a loss-based method's for the next step."""
    return state.weights


def combine_if_per_task(updates, params, num_tasks: int, weights: jax.Array):
    """sum_i w_i g_i for per-cluster gradients [k, ...]; a param-shaped gradient (already the
    gradient of sum_i w_i L_i) passes through."""
    if has_task_axis(updates, params, num_tasks):
        return weighted_sum(updates, weights)
    return updates


def gram_method(
    name: str,
    weights: Callable[..., jax.Array],
    *,
    formula: str,
    source: str,
    guarantee: str = "",
) -> Method:
    """The record of a Gram-based method whose weights are a pure function of G (and the task
    losses and its options), weights(gram [k, k], task_losses [k] = None, **options) -> [k]
    (made with `takes_options`): per-cluster gradients at every step, no state beyond the last
    weights (MGDA, CAGrad, IMTL-G, Aligned-MTL, UPGrad, DualProj, ConFIG). Its constructor is
    name(num_tasks, **options)."""
    options_type = getattr(weights, "Options", NoOptions)

    @takes_options(options_type)
    def constructor(num_tasks: int, *, options) -> optax.GradientTransformationExtraArgs:
        def weights_fn(gram, task_losses, key, extra):
            del key
            return weights(gram, task_losses, **dataclasses.asdict(options)), extra

        return gram_weighting(num_tasks, weights_fn)

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__module__ = weights.__module__  # Where its module exports it (docs resolve it).
    constructor.__doc__ = (
        f"{name} as an optax transform over k = num_tasks clusters: per-cluster gradients "
        f"[k, ...] -> sum_i w_i g_i with w = {weights.__name__}(G, task_losses, **options)."
    )
    return Method(
        name=name,
        constructor=constructor,
        loss_weights=last_weights,
        options=options_type,
        weights=weights,
        task_grads_on=always_needs_task_grads,
        kind="gram",
        formula=formula,
        source=source,
        guarantee=guarantee,
    )
