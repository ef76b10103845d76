"""Rotary position embeddings written with complex numbers (Meta's reference Llama, Llama 4, DeepSeek-V2, many
hand-written transformers): view_as_complex pairs the features, a product with polar(1, θ) turns each pair by its
position's angle, view_as_real unpairs them. propscope carries a computed complex tensor as its real pairs and
writes the product out in real arithmetic; the rotations are constants, made from the angles when the model is read
or kept as a complex buffer. Checked against torch autograd in float64, from the live module, its `.pt2` and its
TorchScript archive, on both backends; and the strided writes another rotary embedding interleaves its angles with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

TOKENS, HEADS, DIM = 6, 2, 4


def _angles() -> Any:
    freqs = 1.0 / (10000 ** (torch.arange(0, DIM, 2).double() / DIM))
    return torch.outer(torch.arange(TOKENS).double(), freqs)


class Rotary(torch.nn.Module):  # type: ignore[misc]
    """Queries turned by their positions' angles, then a classifier head; `buffer`: the rotations precomputed as a
    complex buffer, else made in the forward by polar from a buffer of angles."""

    def __init__(self, buffer: bool) -> None:
        super().__init__()
        self.buffer = buffer
        self.q = torch.nn.Linear(HEADS * DIM, HEADS * DIM)
        self.head = torch.nn.Linear(HEADS * DIM, 3)
        if buffer:
            self.register_buffer("freqs_cis", torch.polar(torch.ones(TOKENS, DIM // 2, dtype=torch.float64),
                                                          _angles()), persistent=False)
        else:
            self.register_buffer("angles", _angles(), persistent=False)

    def forward(self, x: Any) -> Any:
        q = self.q(x).view(x.shape[0], TOKENS, HEADS, DIM)
        rotations = self.freqs_cis if self.buffer else torch.polar(torch.ones_like(self.angles), self.angles) * 0.5
        pairs = torch.view_as_complex(q.reshape(*q.shape[:-1], -1, 2))
        turned = torch.view_as_real(pairs * rotations[None, :, None, :]).flatten(3)
        return self.head(turned.reshape(x.shape[0], TOKENS, HEADS * DIM).type_as(x).mean(1))


def _session(target: Any, x: np.ndarray, y: np.ndarray, backend: str) -> Any:
    inputs = {"inputs": torch.from_numpy(x)} if isinstance(target, torch.nn.Module) else {}
    return open_session(target, dtype="float64", backend=backend, loss="cross_entropy", data={"x": x, "y": y},
                        **inputs)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("source", ["module", "pt2", "torchscript"])
@pytest.mark.parametrize("buffer", [False, True], ids=["polar", "complex-buffer"])
def test_complex_rotations_match_autograd(buffer: bool, source: str, backend: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Rotary(buffer).double().eval()
    x = np.random.default_rng(0).standard_normal((2, TOKENS, HEADS * DIM))
    y = np.array([0, 2])
    target: Any = model
    if source == "pt2":
        target = tmp_path / "rotary.pt2"
        torch.export.save(torch.export.export(model, (torch.from_numpy(x),)), str(target))
    elif source == "torchscript":  # read from its code, never run: the complex buffer from the archive's pickle
        target = tmp_path / "rotary.ts.pt"
        torch.jit.trace(model, (torch.from_numpy(x),)).save(str(target))
    s = _session(target, x, y, backend)
    assert not s.model.unsupported_ops
    s.run_to_end()
    loss, grads, _ = zoo.autograd_reference(model, (x,), y)
    assert float(s.backend.to_numpy(s.value(s.loss_node.name))) == pytest.approx(loss, rel=1e-13)
    for name, want in grads.items():
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), want) < 1e-12, name


class Magnitude(Rotary):
    def forward(self, x: Any) -> Any:
        q = self.q(x).view(x.shape[0], TOKENS, HEADS, DIM)
        return self.head(torch.view_as_complex(q.reshape(*q.shape[:-1], -1, 2)).abs().flatten(2).mean(1).repeat(1, 2))


def test_another_use_of_computed_complex_numbers_is_named() -> None:
    torch.manual_seed(0)
    model = Magnitude(buffer=False).double().eval()
    x = np.random.default_rng(0).standard_normal((2, TOKENS, HEADS * DIM))
    s = open_session(model, inputs=torch.from_numpy(x), dtype="float64", loss="none")
    assert set(s.model.unsupported_ops) == {"aten.abs"}
    reasons = [n.meta.get("reason", "") for n in s.graph.nodes if n.op.name == "unsupported"]
    assert any("complex numbers computed from the data" in r for r in reasons)


class Interleaved(torch.nn.Module):  # type: ignore[misc]
    """Angles of three position axes interleaved by strided writes into a copy (Qwen3.5's multimodal rotary
    embedding: `freqs[..., 1:12:3] = freq_h[..., 1:12:3]`), made from a computed tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 12)

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        mixed = h.clone()
        mixed[..., 1:12:3] = torch.tanh(h[..., 1:12:3])
        mixed[..., 2:12:3] = h[..., 0:12:3] * 2.0
        return torch.cos(mixed) * h


@pytest.mark.parametrize("source", ["module", "pt2"])
def test_strided_writes_match_autograd(source: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Interleaved().double().eval()
    x = np.random.default_rng(0).standard_normal((3, 4))
    target: Any = model
    if source == "pt2":
        target = tmp_path / "interleaved.pt2"
        torch.export.save(torch.export.export(model, (torch.from_numpy(x),)), str(target))
    want = model(torch.from_numpy(x))
    upstream = np.random.default_rng(1).standard_normal(tuple(want.shape))
    grads = torch.autograd.grad(want, list(model.parameters()), torch.from_numpy(upstream))
    y = want.detach().numpy() - upstream * want.numel() / 2  # mse's gradient at the prediction is then `upstream`
    kw = {"inputs": torch.from_numpy(x)} if source == "module" else {}
    s = open_session(target, dtype="float64", loss="mse", data={"x": x, "y": y}, **kw)
    assert not s.model.unsupported_ops
    s.run_to_end()
    np.testing.assert_allclose(s.value(s.prediction_node.name), want.detach().numpy(), rtol=1e-13)
    for (name, _), g in zip(model.named_parameters(), grads, strict=True):
        assert zoo.relative(s.grad(name), g.numpy()) < 1e-12, name


class Detached(Rotary):
    """Half the queries turned as computed, half through a detached copy of their complex pairs: no gradient
    reaches the queries' weights through the detached half, as in torch."""

    def forward(self, x: Any) -> Any:
        q = self.q(x).view(x.shape[0], TOKENS, HEADS, DIM)
        rotations = torch.polar(torch.ones_like(self.angles), self.angles)[None, :, None, :]
        pairs = torch.view_as_complex(q.reshape(*q.shape[:-1], -1, 2))
        turned = torch.view_as_real(pairs * rotations) + torch.view_as_real(pairs.detach() * rotations) ** 2
        return self.head(turned.flatten(3).reshape(x.shape[0], TOKENS, HEADS * DIM).mean(1))


def test_a_detached_complex_tensor_passes_no_gradient() -> None:
    torch.manual_seed(0)
    model = Detached(buffer=False).double().eval()
    x = np.random.default_rng(0).standard_normal((2, TOKENS, HEADS * DIM))
    y = np.array([1, 2])
    s = _session(model, x, y, "numpy")
    assert not s.model.unsupported_ops
    s.run_to_end()
    loss, grads, _ = zoo.autograd_reference(model, (x,), y)
    assert float(s.value(s.loss_node.name)) == pytest.approx(loss, rel=1e-13)
    for name, want in grads.items():
        assert zoo.relative(s.grad(name), want) < 1e-12, name


class ComplexWeight(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.w = torch.nn.Parameter(torch.randn(4, dtype=torch.complex128))

    def forward(self, x: Any) -> Any:
        return torch.view_as_real(torch.view_as_complex(self.fc(x).reshape(2, 4, 2)) * self.w).flatten(1)


@pytest.mark.parametrize("source", ["pt2", "torchscript"])
def test_a_complex_parameter_is_refused_in_one_line(source: str, tmp_path: Path) -> None:
    """propscope's weights are real: a complex one is named, from either file (never a constant without gradient)."""
    from propscope.graph.errors import ModelFormatError

    model, x = ComplexWeight().double(), torch.randn(2, 8, dtype=torch.float64)
    path = tmp_path / ("weight.pt2" if source == "pt2" else "weight.ts.pt")
    if source == "pt2":
        torch.export.save(torch.export.export(model, (x,)), str(path))
    else:
        torch.jit.trace(model, (x,)).save(str(path))
    with pytest.raises(ModelFormatError, match="'w' is complex; propscope trains real weights only"):
        open_session(path, dtype="float64", loss="none", data={"x": x.numpy()})
