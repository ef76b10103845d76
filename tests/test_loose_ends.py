"""Loose ends users hit, each pinned by a test that failed before its fix.

- A traced nn.LSTMCell (TorchScript) chunks its gates with `unsafe_chunk`; a `.pt2` keeps `aten.lstm_cell` (and
  gru_cell, rnn_tanh_cell) whole: both open and step with autograd's numbers.
- An ONNX Cast to float16 / bfloat16 rounds through that type as torch's `.half()` does (1e5 is inf in float16),
  from both of torch's exporters, values and gradients.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
pytestmark = pytest.mark.torch


def _quiet_trace(module: Any, inputs: tuple[np.ndarray, ...], path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(module, tuple(torch.from_numpy(a) for a in inputs)).save(str(path))
    return path


def _quiet_export(module: Any, inputs: tuple[np.ndarray, ...], path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(module, tuple(torch.from_numpy(a) for a in inputs)), str(path))
    return path


# -- 1. recurrent cells: a traced LSTMCell's unsafe_chunk, a .pt2's lstm_cell ------------------------------------
class TwoSteps(nn.Module):
    """A cell stepped twice, the second step from the first's state (so a state that is not the default zeros
    flows in), then a linear head over h (and c, for the LSTM)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[kind](3, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        if self.kind == "lstm":
            h, c = self.cell(x)
            h, c = self.cell(x * 0.5, (h, c))
            return self.head(h * c + h)
        h = self.cell(x)
        return self.head(self.cell(x * 0.5, h))


def _cell_model(kind: str) -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    return TwoSteps(kind).double(), (x,), np.array([0, 1, 1, 0, 1])


def _steps_as_autograd(path: Path, module: Any, inputs: tuple[np.ndarray, ...], y: np.ndarray, backend: str) -> None:
    model = open_model(path)
    assert not [n for n in model.graph if n.op.name == "unsupported"], model.warnings
    s = open_session(model, backend=backend, dtype="float64", data={"x": inputs[0], "y": y}, loss="cross_entropy")
    s.run_to_end()
    loss, grads, _ = zoo.autograd_reference(module, inputs, y)
    assert s.loss_node is not None
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    for name, want in grads.items():
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), want) <= 1e-12, name


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_traced_cells_step_as_autograd(kind: str, backend: str, tmp_path: Path) -> None:
    module, inputs, y = _cell_model(kind)
    path = _quiet_trace(module, inputs, tmp_path / f"{kind}_cell.pt")
    _steps_as_autograd(path, module, inputs, y, backend)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_exported_cells_step_as_autograd(kind: str, backend: str, tmp_path: Path) -> None:
    module, inputs, y = _cell_model(kind)
    path = _quiet_export(module, inputs, tmp_path / f"{kind}_cell.pt2")
    assert f"aten.{kind}{'_tanh' if kind == 'rnn' else ''}_cell" in str(torch.export.load(str(path)).graph)
    _steps_as_autograd(path, module, inputs, y, backend)


# -- 2. ONNX Cast to float16 / bfloat16 rounds through it -------------------------------------------------------
class Narrowed(nn.Module):
    """x · w through float16 and through bfloat16 and back to x's dtype (as `x.half().float()` in float32)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, 2.0, 3.0, 1.0]))

    def forward(self, x: Any) -> Any:
        h = x * self.w
        return h.half().to(x.dtype) * 2.0 + h.bfloat16().to(x.dtype) * x


BIG = np.array([[1e5, 1.0, 0.1, -2.0], [3.3, 1e-3, 4e4, -7e4]], dtype=np.float32)  # 1e5, 1.2e5, 7e4 > 65504
SMALL = np.array([[1.00390625, 0.3, 0.1, -2.7], [3.3, 1e-3, 40.1, -7.77]], dtype=np.float32)


def _torch_run(x: np.ndarray, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """The module's output and ∂L/∂w for L = mean(out²), in `dtype` (a float64 module rounds at .half() too)."""
    module = Narrowed().to(dtype)
    out = module(torch.from_numpy(x).to(dtype))
    (out * out).mean().backward()
    return out.detach().numpy(), module.w.grad.numpy()


@pytest.fixture(scope="module", params=[True, False], ids=["dynamo", "torchscript_exporter"])
def narrowed_onnx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    path = tmp_path_factory.mktemp("cast") / "narrowed.onnx"
    return zoo.export_onnx(Narrowed(), (BIG,), path, dynamo=request.param)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_onnx_cast_to_half_overflows_as_torchs(narrowed_onnx: Path, backend: str) -> None:
    """float32 bit for bit, inf where float16 overflows; a float64 session as a float64 module, which rounds too."""
    for dtype in (torch.float32, torch.float64):
        want, _ = _torch_run(BIG, dtype)
        assert np.isinf(want).sum() == 3
        s = open_session(narrowed_onnx, backend=backend, dtype=str(dtype).removeprefix("torch."), data={"x": BIG},
                         loss="none")
        s.run_to_end()
        np.testing.assert_array_equal(s.backend.to_numpy(s.value(s.prediction_node.name)), want, err_msg=str(dtype))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_onnx_cast_rounds_values_and_gradients_as_torchs(narrowed_onnx: Path, backend: str) -> None:
    """On values bfloat16 and float16 round visibly (1.00390625 is a tie in bfloat16): output and ∂L/∂w."""
    model = open_model(narrowed_onnx)
    assert sorted(n.attrs["dtype"] for n in model.graph if n.op.name == "cast") == ["bfloat16", "float16"]
    unrounded = (SMALL * np.float32([1, 2, 3, 1])) * (2 + SMALL)
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        want, grad = _torch_run(SMALL, dtype)
        assert np.abs(want - unrounded).max() > 1e-3  # the rounding shows
        s = open_session(model, backend=backend, dtype=str(dtype).removeprefix("torch."),
                         data={"x": SMALL, "y": np.zeros(want.shape)}, loss="mse")
        s.run_to_end()
        got = s.backend.to_numpy(s.value(s.prediction_node.name))
        np.testing.assert_allclose(got, want, rtol=tol * 1e-2, atol=0, err_msg=str(dtype))
        np.testing.assert_allclose(s.backend.to_numpy(s.grad("w")), grad, rtol=tol, err_msg=str(dtype))
