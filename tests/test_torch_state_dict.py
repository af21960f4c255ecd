"""The converters' checkpoint reader: a DiT train.py-style checkpoint ({model, ema, opt, args}
with an argparse.Namespace) loads through PyTorch's safe loader with only that class allowed,
and its "ema" entry is what converts. Without PyTorch a stand-in torch module checks the calls;
with it (a side environment) a real file made with random weights is read."""

import argparse
import contextlib
import sys
import types

import numpy as np
import pytest

from tools import torch_state_dict


class _Tensor:
    def __init__(self, array):
        self.array = np.asarray(array)

    def float(self):
        return _Tensor(self.array.astype(np.float32))

    def numpy(self):
        return self.array


def _fake_torch(checkpoint, calls):
    @contextlib.contextmanager
    def safe_globals(allowed):
        calls.append(("safe_globals", tuple(allowed)))
        yield

    def load(path, map_location=None, weights_only=None):
        calls.append(("load", path, map_location, weights_only))
        return checkpoint

    torch = types.ModuleType("torch")
    torch.load = load
    torch.serialization = types.SimpleNamespace(safe_globals=safe_globals)
    return torch


def test_a_training_checkpoint_loads_safely_and_its_ema_converts(monkeypatch):
    checkpoint = {
        "model": {"w": _Tensor([1.0, 2.0])},
        "ema": {"w": _Tensor([3.0, 4.0]), "b": _Tensor(np.float64(5.0))},
        "opt": {"state": {}},
        "args": argparse.Namespace(model="DiT-XL/2"),
    }
    calls = []
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(checkpoint, calls))
    arrays = torch_state_dict.state_dict_arrays("ckpt.pt", entry="ema")
    assert calls == [
        ("safe_globals", (argparse.Namespace,)),
        ("load", "ckpt.pt", "cpu", True),
    ]
    assert sorted(arrays) == ["b", "w"] and arrays["b"].dtype == np.float32
    np.testing.assert_array_equal(arrays["w"], [3.0, 4.0])
    bare = {"w": _Tensor([7.0])}  # an official release file: the state dict itself
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(bare, calls))
    np.testing.assert_array_equal(torch_state_dict.state_dict_arrays("x.pt", "ema")["w"], [7.0])


def test_a_real_train_py_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    if not hasattr(torch.serialization, "safe_globals"):
        pytest.skip("this PyTorch predates safe_globals")
    ema = {"w": torch.randn(3, 2)}
    path = str(tmp_path / "0400000.pt")
    torch.save({"model": {"w": torch.randn(3, 2)}, "ema": ema, "opt": {},
                "args": argparse.Namespace(model="DiT-S/2")}, path)  # fmt: skip
    arrays = torch_state_dict.state_dict_arrays(path, entry="ema")
    np.testing.assert_array_equal(arrays["w"], ema["w"].numpy())
