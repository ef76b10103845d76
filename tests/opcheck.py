"""One helper to check an op, tinygrad style, shared by the op-family test files (`test_ops_*.py`).

A family's test file holds a table of `Case`s and calls the three checks on each:
- `check_gradient`: the NumPy backend's hand-written VJP against fourth-order central differences (float64);
- `check_against_torch`: NumPy forward and VJP against torch's own function under autograd (float64);
- `check_backends_agree`: propscope's torch backend (autograd) against its NumPy backend, float32 and float64,
  forward, VJP and elementwise partials.
`test_ops.py` checks that every catalog op has at least one case in some table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from propscope.backends import get_backend
from propscope.backends.numpy import NumpyBackend
from propscope.debugger.gradcheck import numeric_gradient, relative_error
from propscope.graph.ir import Graph, Node

Array = np.ndarray
Maker = Callable[[np.random.Generator], Array]


# -- inputs ----------------------------------------------------------------------------------
def normal(*shape: int, scale: float = 1.0) -> Maker:
    return lambda rng: rng.standard_normal(shape) * scale


def away_from_zero(*shape: int, low: float = 0.2, high: float = 2.0) -> Maker:
    """|v| in [low, high]: kinks (abs, relu) and poles stay well outside the difference stencil."""
    return lambda rng: rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def positive(*shape: int, low: float = 0.5, high: float = 2.0) -> Maker:
    return lambda rng: rng.uniform(low, high, shape)


def spaced(*shape: int, gap: float = 0.05) -> Maker:
    """Distinct values at least `gap` apart, shuffled: maxima have no ties, even under the stencil."""
    return lambda rng: (rng.permutation(int(np.prod(shape))) * gap - 1.0).reshape(shape)


def ints(high: int, *shape: int, low: int = 0) -> Maker:
    return lambda rng: rng.integers(low, high, shape)


def fixed(value: Any) -> Maker:
    return lambda rng: np.asarray(value)


@dataclass(frozen=True)
class Case:
    op: str
    makers: tuple[Maker, ...]
    torch_fn: Callable[..., Any]  # (F, torch, *tensors) -> tensor: the same function written with torch
    attrs: dict[str, Any] = field(default_factory=dict)
    tag: str = ""
    torch_grad: bool = True  # False where torch defines no derivative
    rtol: float = 1e-7  # gradient check tolerance (relative error against central differences)

    @property
    def id(self) -> str:
        return f"{self.op}-{self.tag}" if self.tag else self.op

    def arrays(self, seed: int = 0) -> list[Array]:
        rng = np.random.default_rng(seed)
        return [make(rng) for make in self.makers]


def one_op(op: str, arrays: list[Array], attrs: dict[str, Any] | None = None) -> Node:
    """A graph holding one op on input leaves shaped like `arrays`; returns the op's node."""
    g = Graph(op)
    leaves = [g.input(f"in{i}", np.shape(a), dtype=str(np.asarray(a).dtype)) for i, a in enumerate(arrays)]
    node = g.add(op, *leaves, name="out", attrs=attrs or {})
    g.set_outputs(node)
    return node


def check_gradient(case: Case, seed: int = 0) -> list[Any]:
    """The hand-written VJP against central differences of sum(out * upstream), in float64."""
    arrays = case.arrays(seed)
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend("float64")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    assert out.shape == node.shape, f"{case.id}: forward gave {out.shape}, the shape rule says {node.shape}"
    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape)
    grads = backend.vjp(node, inputs, out, upstream)
    assert len(grads) == len(inputs)
    for i, (x, grad) in enumerate(zip(inputs, grads, strict=True)):
        if not node.op.differentiable(i):
            assert grad is None, f"{case.id}: {node.op.role(i)} must get no gradient"
            continue
        assert grad is not None and grad.shape == x.shape, f"{case.id}: gradient of input {i} has the wrong shape"
        numeric = numeric_gradient(lambda: np.sum(backend.forward(node, inputs) * upstream), x)
        if max(np.linalg.norm(grad), np.linalg.norm(numeric)) < 1e-9:
            assert np.max(np.abs(grad - numeric), initial=0.0) < 1e-10
            continue
        err = relative_error(grad, numeric)
        assert err < case.rtol, f"{case.id} input {i} ({node.op.role(i)}): relative error {err:.3g}"
    return grads


def check_against_torch(case: Case, seed: int = 3) -> None:
    """NumPy forward and VJP against torch's own function under autograd, float64, to 1e-10."""
    import torch
    import torch.nn.functional as F

    arrays = case.arrays(seed)
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend("float64")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape)
    grads = backend.vjp(node, inputs, out, upstream)
    tensors = [torch.tensor(a) for a in arrays]
    wants = [case.torch_grad and node.op.differentiable(i) and t.is_floating_point() for i, t in enumerate(tensors)]
    for t, w in zip(tensors, wants, strict=True):
        t.requires_grad_(w)
    expected = case.torch_fn(F, torch, *tensors)
    assert tuple(expected.shape) == out.shape, f"{case.id}: shape {out.shape}, torch gives {tuple(expected.shape)}"
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{case.id} forward")
    if not case.torch_grad or not any(wants):
        return
    wrt = [t for t, w in zip(tensors, wants, strict=True) if w]
    found = iter(torch.autograd.grad(expected, wrt, grad_outputs=torch.tensor(upstream), allow_unused=True,
                                     materialize_grads=True))
    for i, w in enumerate(wants):
        if w:
            np.testing.assert_allclose(grads[i], next(found).numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"{case.id}: gradient of input {i}")


def _close(a: Any, b: Any, dtype: str) -> bool:
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (1e-4, 1e-5)
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol))


def check_backends_agree(case: Case, dtype: str, seed: int = 5, device: str = "cpu") -> None:
    """propscope's torch backend (autograd, on `device`) against its NumPy backend (by hand): forward, VJP,
    partials."""
    arrays = case.arrays(seed)
    node = one_op(case.op, arrays, case.attrs)
    np_b, th_b = get_backend("numpy", dtype), get_backend("torch", dtype, device)
    np_in = [np_b.asarray(a) for a in arrays]
    th_in = [th_b.asarray(a) for a in arrays]
    np_out, th_out = np_b.forward(node, np_in), th_b.forward(node, th_in)
    got = th_b.to_numpy(th_out)
    assert got.shape == np_out.shape == node.shape, f"{case.id}: shapes {got.shape} / {np_out.shape} / {node.shape}"
    assert got.dtype == np_out.dtype, f"{case.id}: dtypes {got.dtype} / {np_out.dtype}"
    assert _close(np_out, got, dtype), f"{case.id}: forward differs"
    upstream = np.random.default_rng(seed + 1).normal(size=node.shape)
    np_g = np_b.vjp(node, np_in, np_out, np_b.asarray(upstream))
    th_g = th_b.vjp(node, th_in, th_out, th_b.asarray(upstream))
    for i, (a, b) in enumerate(zip(np_g, th_g, strict=True)):
        assert (a is None) == (b is None), f"{case.id}: gradient of input {i} on one backend only"
        if a is not None:
            assert _close(a, th_b.to_numpy(b), dtype), f"{case.id}: gradient of input {i} differs"
    np_p, th_p = np_b.partials(node, np_in, np_out), th_b.partials(node, th_in, th_out)
    if node.op.elementwise:
        assert np_p is not None and th_p is not None, f"{case.id}: elementwise op without partials"
        for a, b in zip(np_p, th_p, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                full = th_b.to_numpy(b)
                assert _close(np.broadcast_to(a, full.shape), full, dtype), f"{case.id}: partials differ"


def chained_vjps(session: Any, upstream: Array) -> dict[str, Array]:
    """Every node's gradient in a session run forward with no loss: the NumPy backend's hand-written VJPs chained
    by hand from `upstream` at the prediction (what a loss Σ upstream · prediction would start)."""
    backend = get_backend("numpy", "float64")
    grads: dict[str, Array] = {session.prediction_node.name: upstream}
    for node in reversed(session.graph.ops):
        g = grads.get(node.name)
        if g is None:
            continue
        inputs = [session.value(a.name) for a in node.inputs]
        for a, ga in zip(node.inputs, backend.vjp(node, inputs, session.value(node.name), g), strict=True):
            if ga is not None:
                grads[a.name] = grads[a.name] + ga if a.name in grads else ga
    return grads
