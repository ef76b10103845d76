"""index_put of computed values read from .pt2 files: `x[..., i, j] = v` and the scatter-add
(`accumulate=True`) that F.fold (nn.Fold) decomposes into after `run_decompositions()`, and the put at a max
pool's indices that nn.MaxUnpool2d decomposes into (read as max_unpool2d); each stepped on the NumPy and the
torch backend against torch autograd in float64."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo
from test_max_unpool import SegNetBlock

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
pytestmark = pytest.mark.torch


class Folding(nn.Module):
    """Overlapping patches (3 × 2 over a 5 × 6 image, stride (1, 2), padding 1) added back by F.fold."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(18, 18)

    def forward(self, x: Any) -> Any:
        return F.fold(self.lin(x), (5, 6), (2, 3), stride=(1, 2), padding=1).reshape(2, -1)


class MaskedPut(nn.Module):
    """Computed values put at the places of a constant mask (x[mask] = v), then at constant rows (x[i] = v)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("mask", torch.tensor([True, False, True, True]))

    def forward(self, x: Any) -> Any:
        h = self.lin(x)
        out = torch.zeros_like(h)
        out[:, self.mask] = torch.tanh(h[:, :3])
        out[torch.tensor([1, 0])] = out[torch.tensor([1, 0])] * 2 + h[:2]
        return out


def _export(model: Any, x: np.ndarray, path: Path, decomposed: bool) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (torch.from_numpy(x),))
        if decomposed:
            program = program.run_decompositions()
        torch.export.save(program, str(path))
    return path


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("make", "shape", "accumulate"), [(Folding, (2, 18, 18), True),
                                                          (MaskedPut, (2, 4), False)], ids=["fold", "masked_put"])
def test_decomposed_index_put_steps_with_autograds_numbers(make: Any, shape: tuple[int, ...], accumulate: bool,
                                                           backend: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo._jitter(make()).double().eval()
    x = np.random.default_rng(0).standard_normal(shape)
    path = _export(model, x, tmp_path / "m.pt2", decomposed=True)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    puts = [n for n in graph if n.op.name == "index_put"]
    assert puts and all(n.attrs["accumulate"] is accumulate for n in puts)
    y = np.array([1, 3])
    s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x, "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert zoo.relative(s.backend.to_numpy(s.grad(graph.inputs[0].name)), input_grad) <= 1e-10
    for name, grad in grads.items():
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), grad) <= 1e-10, name


class Unpool(nn.Module):
    """Pool, scale, unpool to the pool's own output size (no output_size given)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool = nn.Conv2d(3, 3, 1), nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)

    def forward(self, x: Any) -> Any:
        pooled, indices = self.pool(self.conv(x))
        return self.unpool(pooled * 2, indices).reshape(2, -1)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("make", "shape"), [(SegNetBlock, (2, 2, 5, 7)), (Unpool, (2, 3, 4, 6))],
                         ids=["segnet-odd-size", "unpool"])
def test_decomposed_max_unpool_is_read_as_max_unpool2d(make: Any, shape: tuple[int, ...], backend: str,
                                                       tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo._jitter(make()).double().eval()
    x = np.random.default_rng(0).standard_normal(shape)
    with torch.no_grad():
        y = np.random.default_rng(1).integers(0, 3, model(torch.from_numpy(x)).shape[0])
    path = _export(model, x, tmp_path / "unpool.pt2", decomposed=True)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    assert [n.op.name for n in graph if n.op.name.startswith("max_")] == ["max_pool2d", "max_unpool2d"]
    s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x, "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert zoo.relative(s.backend.to_numpy(s.grad(graph.inputs[0].name)), input_grad) <= 1e-10
    for name, grad in grads.items():
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), grad) <= 1e-10, name


def test_index_put_of_constants_still_folds(tmp_path: Path) -> None:
    """A buffer added to at constant places (0, 2, 0) with constant values is a constant when the file opens."""

    class Buffered(nn.Module):
        def forward(self, x: Any) -> Any:
            table = torch.zeros(4, dtype=x.dtype)
            table.index_put_((torch.arange(3) % 2 * 2,), torch.arange(1, 4, dtype=x.dtype), accumulate=True)
            return x * table

    x = np.random.default_rng(0).standard_normal((2, 4))
    model = open_model(_export(Buffered(), x, tmp_path / "b.pt2", decomposed=True))
    assert not [n for n in model.graph if n.op.name in ("index_put", "unsupported")]
    (table,) = [n for n in model.graph if n.op.name == "constant" and n.shape == (4,)]
    assert model.arrays[table.name].tolist() == [4.0, 0.0, 2.0, 0.0]
