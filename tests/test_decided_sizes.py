"""Sizes a forward's values decide, read along the path its inputs take (propscope/graph/readers/decisions.py):
Qwen2-VL's pattern, small. `grid.tolist()` under torch.export asks an `item()` per element; `max(a, b)` of tensors is
`torch.maximum` there; `torch.tensor([...tensors...])` reads values; `repeat_interleave` by a tensor and `x[mask]`
leave sizes only the values decide (unbacked symbols), each answered by the size the run gave; `x[mask] = v` by a
mask the data computes needs no size at all. Every gradient is checked against torch autograd in float64 and, for
the inputs the new ops route, central differences."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zoo

import propscope
from propscope.graph.datasets import DataError

torch = pytest.importorskip("torch")
nn = torch.nn
pytestmark = pytest.mark.torch


class _Grid(nn.Module):
    """Patches of images whose (frames, rows, columns) grid is a tensor input: attention within each frame (split
    by sizes the grid's values give), positions made from the grid, written where the ids' mask says."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Any, grid: Any, keep: Any) -> Any:
        frames = torch.repeat_interleave(grid[:, 1] * grid[:, 2], grid[:, 0])  # a size the values decide
        bounds = nn.functional.pad(frames.cumsum(0), (1, 0))
        lengths = (bounds[1:] - bounds[:-1]).tolist()  # traced: an item() per element
        h = self.embed(x)
        h = torch.cat([torch.softmax(part @ part.T, -1) @ part for part in torch.split(h, lengths)])
        _, rows, cols = grid[0]
        shift = max(rows, cols)  # torch.maximum while exported: no decision asked
        place = torch.arange(h.shape[0]) + shift
        offsets = torch.tensor([place.max() + 1 - h.shape[0]])  # reads a value
        h = h + offsets.to(h.dtype)[:, None] * 0.1
        kept = h[keep]  # a size the mask's values decide
        out = torch.zeros_like(h)
        out[keep] = torch.tanh(kept)  # written back where the mask is set
        return self.head(out)


def _grid_inputs() -> tuple[Any, Any, Any]:
    torch.manual_seed(0)
    x = torch.randn(12, 3, dtype=torch.float64)
    return x, torch.tensor([[2, 2, 3]]), torch.tensor([True, False, True, True] * 3)


def test_sizes_the_grid_decides_step_with_autograds_gradients_and_central_differences() -> None:
    torch.manual_seed(0)
    module = _Grid().double().eval()
    x, grid, keep = _grid_inputs()
    want = module(x, grid, keep)
    upstream = torch.from_numpy(np.random.default_rng(1).standard_normal(tuple(want.shape)))
    xg = x.clone().requires_grad_(True)
    grads = torch.autograd.grad(module(xg, grid, keep), [*module.parameters(), xg], upstream)
    y = want.detach().numpy() - upstream.numpy() * want.numel() / 2  # mse's gradient at the prediction: upstream
    with pytest.warns(UserWarning, match=r"decided by tensor values \d+ time\(s\).*tolist\(\)"):
        s = propscope.open_session(module, inputs=(x, grid, keep), dtype="float64", loss="mse", data={"y": y})
    assert not s.model.unsupported_ops
    assert any("a size of" in d for d in s.model.decisions)  # the sizes answered are decisions too
    s.run_to_end()
    np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                               rtol=1e-12)
    for (name, _), g in zip(module.named_parameters(), grads, strict=False):
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), g.numpy()) < 1e-12, name
    source = next(n.name for n in s.graph.inputs if tuple(n.shape) == (12, 3))
    got = np.asarray(s.backend.to_numpy(s.grad(source)))
    assert zoo.relative(got, grads[-1].numpy()) < 1e-12

    def loss_at(v: np.ndarray) -> float:
        with torch.no_grad():
            return float((module(torch.from_numpy(v), grid, keep) * upstream).sum())

    base, h = x.numpy(), 1e-6
    numeric = np.zeros_like(base)
    for i in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[i] += h
        minus[i] -= h
        numeric[i] = (loss_at(plus) - loss_at(minus)) / (2 * h)
    assert zoo.relative(got, numeric) < 1e-7
    other = keep.clone()
    other[1] = True
    with pytest.raises(DataError, match="differs from those it was traced on"):  # another mask: another path
        s.set_batch({s.graph.inputs[0].name: x.numpy(), s.graph.inputs[1].name: grid.numpy(),
                     s.graph.inputs[2].name: other.numpy(), "y": y})


class _DropsPadding(nn.Module):
    """Rows of x kept by a mask of x's own values (Idefics3 drops its all-zero padding images so): torch.export
    traces it, with a size only the values decide; propscope reads it along the path its inputs take."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x: Any) -> Any:
        real = (x != 0).any(-1)
        return self.a(x[real]).sum(0, keepdim=True)


def test_a_program_with_sizes_only_values_decide_is_read_along_the_inputs_path() -> None:
    torch.manual_seed(0)
    module = _DropsPadding().double()
    x = torch.randn(5, 3, dtype=torch.float64)
    x[1] = 0
    x[3] = 0
    with pytest.warns(UserWarning, match="a size of 3"):
        s = propscope.open_session(module, inputs=x, dtype="float64", loss="mse", data={"y": np.zeros((1, 2))})
    assert not s.model.unsupported_ops
    s.run_to_end()
    want = module(x)
    np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                               rtol=1e-13)
    (want**2).mean().backward()  # mse against zeros
    for name, p in module.named_parameters():
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), p.grad.numpy()) < 1e-12, name


class _PutsScalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x: Any) -> Any:
        h = self.a(x)
        out = h * 1.0
        out[h > 0] = 0.5  # no size depends on the data: every batch's own mask
        return out


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_write_by_a_mask_the_data_computes_follows_each_batch(tmp_path: Any, backend: str) -> None:
    """From a saved .pt2 (no decisions): the positions follow each batch's mask, gradients as autograd's."""
    torch.manual_seed(0)
    module = _PutsScalar().double()
    path = tmp_path / "puts.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(6, 4, dtype=torch.float64),)), str(path))
    s = propscope.open_session(str(path), dtype="float64", backend=backend, loss="mse")
    assert not s.model.unsupported_ops
    for seed in (1, 2):
        x = torch.from_numpy(np.random.default_rng(seed).standard_normal((6, 4)))
        y = np.random.default_rng(seed + 10).standard_normal((6, 4))
        s.set_batch({s.graph.inputs[0].name: x.numpy(), "y": y})
        s.run_to_end()
        want = module(x)
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                                   rtol=1e-13)
        module.zero_grad()
        ((want - torch.from_numpy(y)) ** 2).mean().backward()
        for name, p in module.named_parameters():
            assert zoo.relative(s.backend.to_numpy(s.grad(name)), p.grad.numpy()) < 1e-12, name


class _Buckets(nn.Module):
    """torch.bucketize of computed values (Idefics3's patch coordinates) and unique_consecutive of a constant
    (Qwen2.5-VL's window boundaries) as a gather's positions."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x: Any) -> Any:
        h = self.a(x)
        bounds = torch.tensor([-0.5, 0.0, 0.5], dtype=h.dtype)
        low = torch.bucketize(h, bounds)
        high = torch.bucketize(h, bounds, right=True)
        picks = torch.unique_consecutive(torch.tensor([0, 0, 2, 2, 1]))
        return h[:, picks] * (1 + low + 2 * high).to(h.dtype)[:, picks]


def test_bucketize_and_unique_consecutive_as_torch() -> None:
    torch.manual_seed(0)
    module = _Buckets().double()
    x = torch.randn(8, 3, dtype=torch.float64)
    x[0, 0] = 0.0  # on a boundary, where right= matters
    s = propscope.open_session(module, inputs=x, dtype="float64", loss="mse", data={"y": np.zeros((8, 3))})
    assert not s.model.unsupported_ops
    s.run_to_end()
    want = module(x)
    np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                               rtol=1e-13)
    (want**2).mean().backward()
    for name, p in module.named_parameters():
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), p.grad.numpy()) < 1e-12, name


class _Remembers(nn.Module):
    """Keeps a tensor from its last call (transformers' Qwen2-VL keeps rope_deltas so) and decides by a value."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.last = None

    def forward(self, x: Any) -> Any:
        h = self.a(x)
        self.last = h.detach()
        return h * 2 if h.sum() > 0 else -h


def test_opening_leaves_the_modules_attributes_as_they_were() -> None:
    module = _Remembers().double()
    propscope.open_session(module, inputs=torch.ones(3, 2, dtype=torch.float64))
    assert module.last is None  # not a traced tensor left behind, nor the run's
