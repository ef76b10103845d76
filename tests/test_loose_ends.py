"""Loose ends users hit, each pinned by a test that failed before its fix.

- A traced nn.LSTMCell (TorchScript) chunks its gates with `unsafe_chunk`; a `.pt2` keeps `aten.lstm_cell` (and
  gru_cell, rnn_tanh_cell) whole: both open and step with autograd's numbers.
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
