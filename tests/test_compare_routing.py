"""`compare` says why the backends part when no derivative differs: values one rounding apart meet a max that
routes its gradient by comparing them (S3D's last blocks: torch's convolution rounds two copied frames apart, NumPy
keeps them tied, the max pool after it sends the gradient to another frame). A backend whose derivative is wrong
gets no such excuse."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import propscope
from propscope.backends.numpy.backend import NumpyBackend
from propscope.debugger.compare import compare_backends

torch = pytest.importorskip("torch")
nn = torch.nn


class _RoundsApart(NumpyBackend):
    """NumPy, but its 1×1 convolution rounds the second of two copied rows one step up (as a BLAS summing in
    another order may)."""

    def forward(self, node: Any, inputs: Any) -> Any:
        out = super().forward(node, inputs)
        if node.op.name == "conv2d":
            out = out.copy()
            out[:, :, 1] = np.nextafter(out[:, :, 1], np.inf)
        return out


class _WrongPoolDerivative(_RoundsApart):
    """And its max pool's derivative is wrong as well (half the gradient lost)."""

    def vjp(self, node: Any, inputs: Any, output: Any, grad_output: Any) -> Any:
        grads = super().vjp(node, inputs, output, grad_output)
        return [None if g is None else g * 0.5 for g in grads] if node.op.name == "max_pool2d" else grads


def _tied_session() -> Any:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.MaxPool2d((2, 1), stride=1), nn.Flatten(),
                           nn.Linear(6, 2)).double()
    row = np.array([0.3, -1.2, 2.5])
    x = np.stack([row, row])[None, None]  # two identical rows: the pool over them meets a tie everywhere
    s = propscope.open_session(module, inputs=x, data={"y": np.array([1])}, loss="cross_entropy", dtype="float64")
    s.run_to_end()
    return s


def test_a_tie_broken_by_rounding_is_named_not_blamed_on_a_derivative() -> None:
    s = _tied_session()
    result = compare_backends(s, _RoundsApart("float64"))
    assert not result.passed  # the numbers do differ: the verdict stays, the note says why
    conv = next(d for d in result.failures if d.op == "conv2d")
    assert conv.value_diff < 1e-15 and conv.grad_diff > 1e-3
    note = result.explanation
    assert note is not None and note.startswith(f"{conv.name}'s gradient differs")
    assert "computes the same gradient through max_pool2d" in note and "one rounding apart" in note


def test_a_wrong_derivative_gets_no_such_note() -> None:
    s = _tied_session()
    result = compare_backends(s, _WrongPoolDerivative("float64"))
    assert not result.passed and result.explanation is None


def test_agreeing_backends_have_no_note() -> None:
    s = _tied_session()
    result = compare_backends(s, NumpyBackend("float64"))
    assert result.passed and result.explanation is None
