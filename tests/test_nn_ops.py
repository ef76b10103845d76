"""The deep-learning ops (conv, pooling, norms, embedding, dropout, indexing, recurrent cells, attention).

Same method as test_ops.py, kept in its own table: every case's hand-written VJP against central
differences in float64, and forward and gradient against torch's functional op (float64, 1e-10).
The cells are also checked against torch.nn.RNNCell / LSTMCell / GRUCell with copied weights, and
attention against nn.MultiheadAttention. Max-pool inputs are spaced apart so no window has a tie.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from propscope.backends.numpy import KERNELS, NumpyBackend
from propscope.debugger.gradcheck import numeric_gradient, relative_error
from propscope.graph.errors import ShapeError
from propscope.graph.ir import Graph, Node
from propscope.graph.ops import CATALOG

Array = np.ndarray
Maker = Callable[[np.random.Generator], Array]

NN_OPS = frozenset({
    "conv2d", "max_pool2d", "avg_pool2d", "flatten", "batch_norm", "layer_norm", "embedding", "dropout", "concat",
    "slice", "select", "index", "rnn_cell", "lstm_cell", "gru_cell", "scaled_dot_product_attention",
})


def normal(*shape: int, scale: float = 1.0) -> Maker:
    return lambda rng: rng.standard_normal(shape) * scale


def spaced(*shape: int) -> Maker:
    """Distinct values at least 0.05 apart: every pooling window has one clear maximum, even under the stencil."""
    return lambda rng: (rng.permutation(int(np.prod(shape))) * 0.05 - 1.0).reshape(shape)


def positive(*shape: int) -> Maker:
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def ints(high: int, *shape: int) -> Maker:
    return lambda rng: rng.integers(0, high, shape)


def fixed(value: Any) -> Maker:
    return lambda rng: np.asarray(value)


@dataclass(frozen=True)
class Case:
    op: str
    makers: tuple[Maker, ...]
    torch_fn: Callable[..., Any]  # (F, torch, *tensors) -> tensor
    attrs: dict[str, Any] = field(default_factory=dict)
    tag: str = ""

    @property
    def id(self) -> str:
        return f"{self.op}-{self.tag}" if self.tag else self.op

    def arrays(self, seed: int = 0) -> list[Array]:
        rng = np.random.default_rng(seed)
        return [make(rng) for make in self.makers]


def _drop(p: float, seed: int) -> Callable[..., Any]:
    def fn(F: Any, torch: Any, x: Any) -> Any:
        keep = np.random.default_rng(seed).random(tuple(x.shape)) >= p
        return x * torch.tensor(keep, dtype=x.dtype) / (1 - p)

    return fn


def _heads(torch: Any, x: Any, h: int) -> Any:
    return x.reshape(*x.shape[:-1], h, x.shape[-1] // h).transpose(-2, -3)


def _sdpa(h: int, causal: bool = False, scale: float | None = None) -> Callable[..., Any]:
    def fn(F: Any, torch: Any, q: Any, k: Any, v: Any) -> Any:
        out = F.scaled_dot_product_attention(_heads(torch, q, h), _heads(torch, k, h), _heads(torch, v, h),
                                             is_causal=causal, scale=scale)
        out = out.transpose(-2, -3)
        return out.reshape(*out.shape[:-2], -1)

    return fn


def _rnn(F: Any, torch: Any, x: Any, h: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, act: str = "tanh") -> Any:
    z = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    return torch.tanh(z) if act == "tanh" else torch.relu(z)


def _lstm(F: Any, torch: Any, x: Any, s: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any) -> Any:
    i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(s[0], w_hh, b_hh)).chunk(4, -1)
    c = torch.sigmoid(f) * s[1] + torch.sigmoid(i) * torch.tanh(g)
    return torch.stack([torch.sigmoid(o) * torch.tanh(c), c])


def _gru(F: Any, torch: Any, x: Any, h: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any) -> Any:
    ri, zi, ni = F.linear(x, w_ih, b_ih).chunk(3, -1)
    rh, zh, nh = F.linear(h, w_hh, b_hh).chunk(3, -1)
    r, z = torch.sigmoid(ri + rh), torch.sigmoid(zi + zh)
    n = torch.tanh(ni + r * nh)
    return (1 - z) * n + z * h


def _conv(**kw: Any) -> Callable[..., Any]:
    return lambda F, t, x, w, b=None: F.conv2d(x, w, b, **kw)


def _cell(gates: int, batch: tuple[int, ...], state: tuple[int, ...], n_in: int = 3, hidden: int = 4) -> tuple:
    return (normal(*batch, n_in), normal(*state, hidden, scale=0.5), normal(gates * hidden, n_in, scale=0.5),
            normal(gates * hidden, hidden, scale=0.5), normal(gates * hidden, scale=0.3),
            normal(gates * hidden, scale=0.3))


CASES = [
    # conv2d: plain, stride, padding, dilation, groups, depthwise, no bias, rectangular everything
    Case("conv2d", (normal(2, 3, 7, 6), normal(4, 3, 3, 3), normal(4)), _conv()),
    Case("conv2d", (normal(2, 3, 7, 6), normal(4, 3, 3, 3), normal(4)), _conv(stride=2, padding=1),
         {"stride": 2, "padding": 1}, "stride2-pad1"),
    Case("conv2d", (normal(1, 2, 9, 8), normal(3, 2, 3, 3), normal(3)), _conv(padding=2, dilation=2),
         {"padding": 2, "dilation": 2}, "dilation2"),
    Case("conv2d", (normal(2, 4, 6, 6), normal(6, 2, 3, 3), normal(6)), _conv(groups=2, padding=1),
         {"groups": 2, "padding": 1}, "groups2"),
    Case("conv2d", (normal(1, 3, 5, 5), normal(3, 1, 3, 3), normal(3)), _conv(groups=3), {"groups": 3},
         "depthwise"),
    Case("conv2d", (normal(2, 2, 5, 5), normal(3, 2, 2, 2)), _conv(), tag="no-bias"),
    Case("conv2d", (normal(2, 2, 7, 8), normal(3, 2, 2, 3), normal(3)),
         _conv(stride=(2, 1), padding=(0, 1), dilation=(1, 2)),
         {"stride": (2, 1), "padding": (0, 1), "dilation": (1, 2)}, "rectangular"),
    Case("conv2d", (normal(2, 3, 4, 4), normal(5, 3, 1, 1), normal(5)), _conv(), tag="1x1"),
    Case("conv2d", (normal(1, 1, 5, 5), normal(2, 1, 3, 3), normal(2)), _conv(stride=3, padding=1),
         {"stride": 3, "padding": 1}, "stride-skips-pixels"),
    # pooling
    Case("max_pool2d", (spaced(2, 3, 6, 6),), lambda F, t, x: F.max_pool2d(x, 2), {"kernel_size": 2}),
    Case("max_pool2d", (spaced(2, 2, 7, 7),), lambda F, t, x: F.max_pool2d(x, 3, 2, 1),
         {"kernel_size": 3, "stride": 2, "padding": 1}, "k3-s2-p1-overlapping"),
    Case("max_pool2d", (spaced(1, 2, 6, 7),), lambda F, t, x: F.max_pool2d(x, (2, 3), (1, 2)),
         {"kernel_size": (2, 3), "stride": (1, 2)}, "rectangular"),
    Case("max_pool2d", (spaced(1, 2, 7, 7),), lambda F, t, x: F.max_pool2d(x, 2, 1, 0, 2),
         {"kernel_size": 2, "stride": 1, "dilation": 2}, "dilation2"),
    Case("avg_pool2d", (normal(2, 3, 6, 6),), lambda F, t, x: F.avg_pool2d(x, 2), {"kernel_size": 2}),
    Case("avg_pool2d", (normal(2, 2, 7, 7),), lambda F, t, x: F.avg_pool2d(x, 3, 2, 1),
         {"kernel_size": 3, "stride": 2, "padding": 1}, "k3-s2-p1"),
    Case("avg_pool2d", (normal(1, 2, 6, 7),), lambda F, t, x: F.avg_pool2d(x, (2, 3), (2, 1)),
         {"kernel_size": (2, 3), "stride": (2, 1)}, "rectangular"),
    # shapes
    Case("flatten", (normal(2, 3, 4, 5),), lambda F, t, x: t.flatten(x, 1)),
    Case("flatten", (normal(2, 3, 4),), lambda F, t, x: t.flatten(x, 0), {"start_dim": 0}, "all"),
    Case("flatten", (normal(2, 3, 4, 5),), lambda F, t, x: t.flatten(x, 1, 2), {"start_dim": 1, "end_dim": 2},
         "middle"),
    # normalisation
    Case("batch_norm", (normal(4, 3, 2, 2, scale=2.0), normal(3), normal(3), normal(3), positive(3)),
         lambda F, t, x, w, b, m, v: F.batch_norm(x, m.clone(), v.clone(), w, b, True, 0.1, 1e-5), tag="train"),
    Case("batch_norm", (normal(6, 3), normal(3), normal(3), normal(3), positive(3)),
         lambda F, t, x, w, b, m, v: F.batch_norm(x, m.clone(), v.clone(), w, b, True, 0.1, 1e-3),
         {"eps": 1e-3}, "train-2d"),
    Case("batch_norm", (normal(4, 3, 2, 2), normal(3), normal(3), normal(3), positive(3)),
         lambda F, t, x, w, b, m, v: F.batch_norm(x, m, v, w, b, False, 0.1, 1e-5), {"training": False}, "eval"),
    Case("layer_norm", (normal(2, 3, 4), normal(4), normal(4)), lambda F, t, x, w, b: F.layer_norm(x, (4,), w, b)),
    Case("layer_norm", (normal(2, 3, 4), normal(3, 4), normal(3, 4)),
         lambda F, t, x, w, b: F.layer_norm(x, (3, 4), w, b, 1e-3), {"normalized_shape": (3, 4), "eps": 1e-3},
         "two-axes"),
    # embedding, dropout
    Case("embedding", (fixed([[1, 3, 1], [0, 4, 1]]), normal(5, 4)), lambda F, t, i, e: F.embedding(i.long(), e)),
    Case("embedding", (fixed([[1, 3, 1], [0, 4, 1]]), normal(5, 4)),
         lambda F, t, i, e: F.embedding(i.long(), e, padding_idx=1), {"padding_idx": 1}, "padding"),
    Case("embedding", (fixed([2.0, 0.0, 2.0]), normal(3, 2)), lambda F, t, i, e: F.embedding(i.long(), e),
         tag="float-ids"),
    Case("dropout", (normal(4, 5),), _drop(0.3, 7), {"p": 0.3, "seed": 7}),
    Case("dropout", (normal(4, 5),), lambda F, t, x: F.dropout(x, 0.3, training=False),
         {"p": 0.3, "training": False}, "eval"),
    # joining and picking
    Case("concat", (normal(2, 1, 3), normal(2, 2, 3), normal(2, 3, 3)), lambda F, t, *xs: t.cat(xs, 1),
         {"axis": 1}),
    Case("concat", (normal(2, 3), normal(2, 2)), lambda F, t, *xs: t.cat(xs, -1), {"axis": -1}, "last-axis"),
    Case("slice", (normal(3, 7),), lambda F, t, x: x[:, 1::2],
         {"axes": (1,), "starts": (1,), "stops": (None,), "steps": (2,)}),
    Case("slice", (normal(4, 5, 6),), lambda F, t, x: x[1:-1, :, -4:5],
         {"axes": (0, -1), "starts": (1, -4), "stops": (-1, 5), "steps": (1, 1)}, "two-axes"),
    Case("select", (normal(2, 4, 3),), lambda F, t, x: t.select(x, 1, 2), {"axis": 1, "index": 2}),
    Case("select", (normal(2, 4, 3),), lambda F, t, x: x[..., -1], {"axis": -1, "index": -1}, "last"),
    Case("index", (normal(5, 3), fixed([4, 0, 4, 2])), lambda F, t, x, i: t.index_select(x, 0, i.long()),
         tag="repeats"),
    Case("index", (normal(2, 5, 3), fixed([[1, 1], [4, 0]])),
         lambda F, t, x, i: t.index_select(x, 1, i.long().flatten()).reshape(2, 2, 2, 3), {"axis": 1}, "2d-idx"),
    # recurrent cells
    Case("rnn_cell", _cell(1, (3,), (3,)), _rnn),
    Case("rnn_cell", _cell(1, (3,), (3,)), lambda F, t, *a: _rnn(F, t, *a, act="relu"), {"nonlinearity": "relu"},
         "relu"),
    Case("rnn_cell", _cell(1, (3,), ()), _rnn, tag="initial-state-broadcast"),
    Case("lstm_cell", _cell(4, (3,), (2, 3)), _lstm),
    Case("lstm_cell", _cell(4, (3,), (2, 1)), _lstm, tag="initial-state-broadcast"),
    Case("lstm_cell", _cell(4, (2, 3), (2, 2, 3)), _lstm, tag="extra-batch-axis"),
    Case("gru_cell", _cell(3, (3,), (3,)), _gru),
    Case("gru_cell", _cell(3, (3,), ()), _gru, tag="initial-state-broadcast"),
    # attention
    Case("scaled_dot_product_attention", (normal(2, 4, 6), normal(2, 5, 6), normal(2, 5, 4)), _sdpa(1)),
    Case("scaled_dot_product_attention", (normal(2, 5, 6), normal(2, 5, 6), normal(2, 5, 4)), _sdpa(2, True),
         {"num_heads": 2, "causal": True}, "2-heads-causal"),
    Case("scaled_dot_product_attention", (normal(1, 2, 3, 4), normal(1, 2, 6, 4), normal(1, 2, 6, 4)),
         _sdpa(2, True, 0.3), {"num_heads": 2, "causal": True, "scale": 0.3}, "batched-causal-L<S"),
]


def one_op(op: str, arrays: list[Array], attrs: dict[str, Any] | None = None) -> Node:
    g = Graph(op)
    leaves = [g.input(f"in{i}", np.shape(a)) for i, a in enumerate(arrays)]
    node = g.add(op, *leaves, name="out", attrs=attrs or {})
    g.set_outputs(node)
    return node


def test_every_new_op_has_a_case_here() -> None:
    assert NN_OPS.issubset(CATALOG) and NN_OPS.issubset(KERNELS)
    assert {c.op for c in CASES} == NN_OPS


@pytest.mark.parametrize("name", sorted(NN_OPS))
def test_catalog_rows_say_formulas(name: str) -> None:
    op = CATALOG[name]
    assert op.formula.strip() and op.summary.strip() and op.roles
    for i, role in enumerate(op.roles):
        if op.differentiable(i):
            assert op.derivatives.get(role, "").strip(), f"{name}: no derivative formula for {role}"
    assert set(op.nondifferentiable) <= {"ids", "idx", "μ_run", "σ²_run"}
    assert op.elementwise == KERNELS[name].elementwise


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_vjp_matches_finite_differences(case: Case) -> None:
    arrays = case.arrays()
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend("float64")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    assert out.shape == node.shape, f"forward gave {out.shape}, the shape rule says {node.shape}"
    upstream = np.random.default_rng(1).standard_normal(out.shape)
    grads = backend.vjp(node, inputs, out, upstream)
    assert len(grads) == len(inputs)
    for i, (x, grad) in enumerate(zip(inputs, grads, strict=True)):
        if not node.op.differentiable(i):
            assert grad is None
            continue
        assert grad is not None and grad.shape == x.shape, f"input {i}: gradient shape"
        numeric = numeric_gradient(lambda: np.sum(backend.forward(node, inputs) * upstream), x)
        padding = node.attrs.get("padding_idx") if case.op == "embedding" else None
        if padding is not None:  # by PyTorch's convention the padding row gets none, though the forward uses it
            assert not np.any(grad[padding]) and np.any(numeric[padding])
            numeric[padding] = 0.0
        err = relative_error(grad, numeric)
        assert err < 1e-7, f"{case.id} input {i} ({node.op.role(i)}): relative error {err:.3g}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float32_stays_float32(case: Case) -> None:
    arrays = case.arrays()
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend("float32")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    assert out.dtype == np.float32
    for g in backend.vjp(node, inputs, out, backend.ones(out.shape)):
        assert g is None or g.dtype == np.float32
    reference = NumpyBackend("float64").forward(node, [NumpyBackend("float64").asarray(a) for a in arrays])
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_torch(case: Case) -> None:
    import torch
    import torch.nn.functional as F

    arrays = case.arrays(seed=3)
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend("float64")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    upstream = np.random.default_rng(4).standard_normal(out.shape)
    grads = backend.vjp(node, inputs, out, upstream)

    tensors = [torch.tensor(a) for a in arrays]
    wants = [node.op.differentiable(i) for i in range(len(arrays))]
    for t, w in zip(tensors, wants, strict=True):
        t.requires_grad_(w)
    expected = case.torch_fn(F, torch, *tensors)
    assert tuple(expected.shape) == out.shape
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    torch_grads = iter(torch.autograd.grad(expected, [t for t, w in zip(tensors, wants, strict=True) if w],
                                           grad_outputs=torch.tensor(upstream)))
    for i, w in enumerate(wants):
        if w:
            np.testing.assert_allclose(grads[i], next(torch_grads).numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"{case.id}: gradient of input {i}")


def test_dropout_partials_are_the_mask_and_eval_is_identity() -> None:
    x = np.random.default_rng(0).standard_normal((50, 40))
    node = one_op("dropout", [x], {"p": 0.25, "seed": 3})
    b = NumpyBackend("float64")
    out = b.forward(node, [x])
    (local,) = b.partials(node, [x], out)
    assert set(np.unique(local)) == {0.0, 1 / 0.75}
    assert abs((local == 0).mean() - 0.25) < 0.03  # about p of them dropped
    np.testing.assert_array_equal(out, b.forward(node, [x]))  # the seed makes every run the same
    other = one_op("dropout", [x], {"p": 0.25, "seed": 4})
    assert not np.array_equal(out, b.forward(other, [x]))
    assert np.array_equal(b.forward(one_op("dropout", [x], {"training": False}), [x]), x)


@pytest.mark.parametrize(
    ("op", "shapes", "attrs", "message"),
    [
        ("conv2d", [(1, 3, 5, 5), (4, 2, 3, 3)], {}, "input channels"),
        ("conv2d", [(1, 4, 5, 5), (3, 2, 3, 3)], {"groups": 2}, "groups=2"),
        ("conv2d", [(1, 1, 2, 2), (1, 1, 3, 3)], {}, "does not fit"),
        ("conv2d", [(1, 5, 5), (1, 1, 3, 3)], {}, "(batch, channels, height, width)"),
        ("conv2d", [(1, 1, 5, 5), (2, 1, 3, 3), (3,)], {}, "bias"),
        ("max_pool2d", [(1, 1, 4, 4)], {"kernel_size": 2, "padding": 2}, "at most half"),
        ("batch_norm", [(4, 3), (3,), (3,), (2,), (3,)], {}, "μ_run"),
        ("layer_norm", [(2, 3), (4,), (4,)], {}, "last axes"),
        ("concat", [(2, 3), (3, 3)], {"axis": 1}, "other axes differ"),
        ("select", [(2, 3)], {"axis": 1, "index": 3}, "out of range"),
        ("rnn_cell", [(2, 3), (2, 4), (4, 2), (4, 4), (4,), (4,)], {}, "W_ih"),
        ("lstm_cell", [(2, 3), (3, 4), (16, 3), (16, 4), (16,), (16,)], {}, "stacks (h, c)"),
        ("scaled_dot_product_attention", [(1, 4, 6), (1, 4, 6), (1, 4, 6)], {"num_heads": 4}, "num_heads"),
    ],
)
def test_shape_errors_name_the_problem(op: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any],
                                       message: str) -> None:
    with pytest.raises(ShapeError, match=None) as info:
        one_op(op, [np.zeros(s) for s in shapes], attrs)
    assert message in str(info.value)


# -- the cells against torch.nn modules, weights copied ------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cells_match_torch_modules(kind: str) -> None:
    import torch

    torch.manual_seed(0)
    module = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind](3, 5).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 4, 5, dtype=torch.float64) if kind == "lstm" else torch.randn(4, 5, dtype=torch.float64)
    if kind == "lstm":
        h_new, c_new = module(x, (h, c))
        out = torch.stack([h_new, c_new])
        wrt = [x, h, c]
    else:
        out = module(x, h)
        wrt = [x, h]
    params = [module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh]
    torch_grads = torch.autograd.grad(out, wrt + params, grad_outputs=upstream)

    state = np.stack([h.detach().numpy(), c.detach().numpy()]) if kind == "lstm" else h.detach().numpy()
    arrays = [x.detach().numpy(), state] + [p.detach().numpy() for p in params]
    node = one_op(f"{kind}_cell", arrays)
    b = NumpyBackend("float64")
    ours = b.forward(node, arrays)
    np.testing.assert_allclose(ours, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    grads = b.vjp(node, arrays, ours, upstream.numpy())
    expected_state = torch.stack(torch_grads[1:3]) if kind == "lstm" else torch_grads[1]
    rest = torch_grads[len(wrt):]
    for got, want in zip(grads, [torch_grads[0], expected_state, *rest], strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_multihead_attention(causal: bool) -> None:
    """nn.MultiheadAttention = in-projections, our fused op, out-projection."""
    import torch

    torch.manual_seed(1)
    embed, heads, length = 6, 2, 5
    mha = torch.nn.MultiheadAttention(embed, heads, batch_first=True).double()
    x = torch.randn(3, length, embed, dtype=torch.float64)
    mask = torch.triu(torch.ones(length, length, dtype=torch.bool), 1) if causal else None
    expected, _ = mha(x, x, x, attn_mask=mask, need_weights=False)

    w_q, w_k, w_v = mha.in_proj_weight.detach().numpy().reshape(3, embed, embed)
    b_q, b_k, b_v = mha.in_proj_bias.detach().numpy().reshape(3, embed)
    xs = x.numpy()
    q, k, v = xs @ w_q.T + b_q, xs @ w_k.T + b_k, xs @ w_v.T + b_v
    node = one_op("scaled_dot_product_attention", [q, k, v], {"num_heads": heads, "causal": causal})
    ctx = NumpyBackend("float64").forward(node, [q, k, v])
    ours = ctx @ mha.out_proj.weight.detach().numpy().T + mha.out_proj.bias.detach().numpy()
    np.testing.assert_allclose(ours, expected.detach().numpy(), rtol=1e-10, atol=1e-12)


# -- random geometries against torch ------------------------------------------------------------------
@st.composite
def conv_geometries(draw: st.DrawFn) -> dict[str, Any]:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 7))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 7))
    return {"x": (draw(st.integers(1, 2)), c_in, h, w), "W": (c_out, c_in // groups, kh, kw),
            "bias": draw(st.booleans()),
            "attrs": {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}}


@pytest.mark.torch
@settings(max_examples=30, deadline=None)
@given(geo=conv_geometries(), seed=st.integers(0, 2**16))
def test_conv2d_any_geometry_matches_torch(geo: dict[str, Any], seed: int) -> None:
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(geo["x"]), rng.standard_normal(geo["W"])]
    if geo["bias"]:
        arrays.append(rng.standard_normal(geo["W"][0]))
    node = one_op("conv2d", arrays, geo["attrs"])
    b = NumpyBackend("float64")
    out = b.forward(node, arrays)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    expected = F.conv2d(*tensors, **geo["attrs"]) if geo["bias"] else F.conv2d(*tensors, None, **geo["attrs"])
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = rng.standard_normal(out.shape)
    for got, want in zip(b.vjp(node, arrays, out, upstream),
                         torch.autograd.grad(expected, tensors, torch.tensor(upstream)), strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["max", "avg"]), k=st.integers(1, 3), s=st.integers(1, 3), p=st.integers(0, 1),
       hw=st.tuples(st.integers(3, 7), st.integers(3, 7)), seed=st.integers(0, 2**16))
def test_pools_any_geometry_match_torch(kind: str, k: int, s: int, p: int, hw: tuple[int, int], seed: int) -> None:
    import torch
    import torch.nn.functional as F

    p = min(p, k // 2)
    x = spaced(2, 2, *hw)(np.random.default_rng(seed))
    node = one_op(f"{kind}_pool2d", [x], {"kernel_size": k, "stride": s, "padding": p})
    b = NumpyBackend("float64")
    out = b.forward(node, [x])
    t = torch.tensor(x, requires_grad=True)
    expected = getattr(F, f"{kind}_pool2d")(t, k, s, p)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape)
    (want,) = torch.autograd.grad(expected, [t], torch.tensor(upstream))
    np.testing.assert_allclose(b.vjp(node, [x], out, upstream)[0], want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
def test_running_stats_update_like_torch() -> None:
    """The side effect batch_norm leaves to the trainer: PyTorch's momentum update with the unbiased variance."""
    import torch
    import torch.nn.functional as F

    from propscope.backends.numpy.norm import batch_norm_running_stats

    rng = np.random.default_rng(5)
    x, mean, var = rng.standard_normal((6, 3, 2, 2)), rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    t_mean, t_var = torch.tensor(mean), torch.tensor(var)
    F.batch_norm(torch.tensor(x), t_mean, t_var, training=True, momentum=0.2)
    new_mean, new_var = batch_norm_running_stats(x, mean, var, momentum=0.2)
    np.testing.assert_allclose(new_mean, t_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(new_var, t_var.numpy(), rtol=1e-12)
