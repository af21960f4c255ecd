"""benchmarks/step_profile.py: its HLO classifier names each fusion's kind and source op."""

import jax
import jax.numpy as jnp

from benchmarks import step_profile


def test_classify_names_the_kind_and_op_of_each_compiled_instruction():
    def f(a, b):
        return jnp.tanh(a @ b).sum(axis=0), jnp.exp(a) * 2

    a = jnp.ones((64, 32))
    b = jnp.ones((32, 16))
    compiled = jax.jit(f).lower(a, b).compile()
    kinds = step_profile.classify(compiled.as_text())
    by_op = {}
    for kind, op in kinds.values():
        by_op.setdefault(op, set()).add(kind)
    assert "dot" in by_op["dot_general"]
    assert "elementwise" in by_op.get("exp", set()) | by_op.get("mul", set())
    assert all(not op.startswith("jit(") for op in by_op)
