"""x[mask] by a boolean mask the data computes has a size only the values decide: it is an unsupported op, named
with why, never read as integer ids (False and True would pick rows 0 and 1, silently wrong). A mask known when the
file is read (a buffer) still folds and matches torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import propscope
from propscope.backends import get_backend
from propscope.graph.errors import UnsupportedOpError
from propscope.graph.ir import Graph

torch = pytest.importorskip("torch")
nn = torch.nn


class _Selects(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x: Any) -> Any:
        h = self.a(x)
        return h[h.sum(1) > 0].sum(0, keepdim=True)


class _PutsByMask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x: Any) -> Any:
        h = self.a(x)
        out = torch.zeros_like(h)
        out[h > 0] = h[h > 0] * 2
        return out


class _KnownMask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.register_buffer("keep", torch.tensor([True, False, True, True, False, True]))

    def forward(self, x: Any) -> Any:
        return self.a(x)[self.keep]


def _saved(module: Any, tmp_path: Any, x: Any) -> str:
    path = tmp_path / f"{type(module).__name__}.pt2"
    torch.export.save(torch.export.export(module, (x,)), str(path))
    return str(path)


@pytest.mark.parametrize(("module", "reason"), [
    (_Selects, "x[mask] by a boolean mask computed from the data: the result's size depends on the values"),
    # x[mask] = v itself maps (no size depends on the data: test_decided_sizes.py); the x[mask] it writes does not
    (_PutsByMask, "it reads an output of unsupported op aten.index (x[mask] by a boolean mask computed from the data"),
])
def test_a_mask_the_data_computes_is_unsupported_by_name_never_read_as_ids(tmp_path: Any, module: Any,
                                                                            reason: str) -> None:
    torch.manual_seed(0)
    s = propscope.open_session(_saved(module(), tmp_path, torch.randn(6, 4)))
    with pytest.raises(UnsupportedOpError, match="stepping stops here") as stop:
        s.run_to_end()
    assert reason in str(stop.value)


def test_a_mask_known_when_read_still_selects_as_torch_does(tmp_path: Any) -> None:
    torch.manual_seed(0)
    module, x = _KnownMask().double(), torch.randn(6, 4, dtype=torch.float64)
    s = propscope.open_session(_saved(module, tmp_path, x), dtype="float64")
    s.run_to_end()
    np.testing.assert_allclose(s.value(s.graph.outputs[0].name), module(x).detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_the_index_kernel_refuses_a_boolean_mask(backend: str) -> None:
    g = Graph()
    x, ids = g.input("x", (3, 2)), g.input("ids", (3,))
    node = g.add("index", x, ids, attrs={"axis": 0})
    b = get_backend(backend, "float64")
    mask = np.array([True, False, True])  # as a compare node makes it: a boolean array, not the float dtype
    with pytest.raises(TypeError, match="not a boolean mask"):
        b.forward(node, [b.asarray(np.ones((3, 2))), torch.from_numpy(mask) if backend == "torch" else mask])


def test_stepping_names_the_unsupported_op_not_the_supported_one_after_it(tmp_path: Any) -> None:
    """sum is supported; the index it reads is not: the stop says so, rather than 'aten.sum is not supported'."""
    torch.manual_seed(0)
    s = propscope.open_session(_saved(_Selects(), tmp_path, torch.randn(6, 4)))
    with pytest.raises(UnsupportedOpError) as stop:
        s.run_to_end()
    said = str(stop.value)
    assert "(aten.sum): it reads an output of unsupported op aten.index" in said and "sum is not supported" not in said
