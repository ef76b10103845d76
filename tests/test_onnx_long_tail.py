"""The ONNX operator long tail, end to end: files that use each operator, opened and stepped on the NumPy and the
torch backends in float64, the loss and the gradient of every float input (and parameter) against torch autograd.

- Exporters write the op: torch.onnx.export (dynamo) writes Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh and Atanh
  for torch's functions; torch.export writes aten.asin...aten.atanh, aten.cumprod, aten.softshrink and
  aten.hardshrink (as is and after `run_decompositions()`).
- Operators no installed exporter writes (torch's LPPool, F.normalize and Softshrink export as primitive ops;
  cumprod does not export): one-node files made with onnx.helper for MeanVarianceNormalization, LpNormalization,
  LpPool, GlobalLpPool, Shrink, CumProd, EyeLike, ReverseSequence, CenterCropPad, RotaryEmbedding, SwiGLU,
  CausalConvWithState and LinearAttention. The forward pass is checked against ONNX's reference evaluator (its
  definition of the operator), the gradients against autograd through the same function written with torch.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
nn, F = torch.nn, torch.nn.functional
pytestmark = pytest.mark.torch

BACKENDS = ("numpy", "torch")


def _no_unsupported(graph: Any) -> None:
    unsupported = [f"{n.meta.get('original_op')}: {n.meta.get('reason')}" for n in graph if n.op.name == "unsupported"]
    assert not unsupported, unsupported


# -- exporters write the op ----------------------------------------------------------------------------------
class TrigHyperbolic(nn.Module):
    """Every inverse trigonometric and hyperbolic function of torch, each on values inside its domain (scales that
    float32 holds exactly: the dynamo exporter writes a Python float as float32's nearest, in a double tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.head = nn.Linear(4, 5), nn.Linear(40, 3)

    def forward(self, x: Any) -> Any:
        h = 0.875 * torch.tanh(self.fc(x))
        parts = [torch.asin(h), torch.acos(h), torch.atan(2.0 * h), torch.sinh(2.0 * h), torch.cosh(h),
                 torch.asinh(3.0 * h), torch.acosh(1.5 + h * h), torch.atanh(0.75 * h)]
        return self.head(torch.cat(parts, dim=-1))


class CumProd(nn.Module):
    """Running products of a ReLU's output (exact zeros in the rows), forward and from the end."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.head = nn.Linear(4, 6), nn.Linear(12, 3)

    def forward(self, x: Any) -> Any:
        h = F.relu(self.fc(x)) + 0.5 * torch.tanh(self.fc(x))
        return self.head(torch.cat([torch.cumprod(h, 1), torch.cumprod(h.flip(1), 1).flip(1)], dim=-1))


class Shrinks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.head = nn.Linear(4, 6), nn.Linear(12, 3)

    def forward(self, x: Any) -> Any:
        h = 2.0 * self.fc(x)
        return self.head(torch.cat([F.softshrink(h, 0.5), F.hardshrink(h, 0.3)], dim=-1))


EXPORTED = {"trig_hyperbolic": TrigHyperbolic, "cumprod": CumProd, "shrinks": Shrinks}
CATALOG_OPS = {"trig_hyperbolic": {"asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh"},
               "cumprod": {"cumprod"}, "shrinks": {"shrink"}}


def _model(name: str) -> Any:
    torch.manual_seed(0)
    return zoo._jitter(EXPORTED[name]()).double().eval()


def _check_against_autograd(path: Any, model: Any, x: np.ndarray, label: str) -> None:
    """Cross-entropy on both backends: the loss, the input's and every parameter's gradient as autograd's."""
    y = np.random.default_rng(9).integers(0, 3, x.shape[0])
    loss, grads, (x_grad,) = zoo.autograd_reference(model, (x,), y)
    graph = open_model(path).graph
    names = [n.name for n in graph.inputs]
    for backend in BACKENDS:
        s = open_session(path, backend=backend, dtype="float64", data={names[0]: x, "y": y}, loss="cross_entropy")
        s.run_to_end()
        got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
        assert abs(got - loss) <= 1e-12 * max(1.0, abs(loss)), f"{label} {backend}: loss {got} != {loss}"
        assert zoo.relative(s.backend.to_numpy(s.grad(names[0])), x_grad) <= 1e-10, f"{label} {backend}: input"
        leaves = {n.name for n in graph.leaves}
        checked = [p for p in grads if p in leaves]
        assert checked, f"{label}: no parameter kept its name"
        for param in checked:
            err = zoo.relative(s.backend.to_numpy(s.grad(param)), grads[param])
            assert err <= 1e-10, f"{label} {backend}: {param}: relative difference {err:.3g}"


def test_dynamo_exporters_inverse_trig_and_hyperbolic_ops_step_with_autograd(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    model = _model("trig_hyperbolic")
    x = np.random.default_rng(0).standard_normal((3, 4))
    path = tmp_path / "trig.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        zoo.export_onnx(model, (x,), path, dynamo=True)
    written = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"} <= written, sorted(written)
    graph = open_model(path).graph
    _no_unsupported(graph)
    assert CATALOG_OPS["trig_hyperbolic"] <= {n.op.name for n in graph.ops}
    _check_against_autograd(path, model, x, "dynamo")


@pytest.mark.parametrize("decompose", [False, True], ids=["as_is", "decomposed"])
@pytest.mark.parametrize("name", list(EXPORTED))
def test_torch_export_programs_step_with_autograd(name: str, decompose: bool, tmp_path: Path) -> None:
    model = _model(name)
    x = np.random.default_rng(0).standard_normal((3, 4))
    path = tmp_path / f"{name}.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (torch.from_numpy(x),))
        if decompose:
            program = program.run_decompositions()
        torch.export.save(program, str(path))
    graph = open_model(path).graph
    _no_unsupported(graph)
    if not decompose:  # the op as torch names it is one catalog op (decomposed, softshrink is where's and such)
        assert CATALOG_OPS[name] <= {n.op.name for n in graph.ops}, sorted({n.op.name for n in graph.ops})
    if name == "cumprod":
        h = F.relu(model.fc(torch.from_numpy(x)))
        assert (h == 0).any(), "the rows should hold zeros (cumprod's gradient past a zero)"
    _check_against_autograd(path, model, x, f"{name} {'decomposed' if decompose else 'as is'}")


# -- operators no exporter writes: one-node files ------------------------------------------------------------
@dataclass
class OneNode:
    """One ONNX node on float64 inputs (and integer constants or inputs), with torch's version of it."""

    op: str
    inputs: dict[str, np.ndarray]
    torch_fn: Callable[..., Any]  # (*tensors in `inputs` order) -> the first output
    attrs: dict[str, Any] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)  # initializers (shapes, axes, lengths)
    outputs: int = 1
    order: tuple[str, ...] = ()  # the node's inputs, "" for an absent one (default: inputs then constants)
    catalog: frozenset[str] = frozenset()  # catalog ops the reader must have made of it
    reference: str = "float64"  # how ONNX's reference evaluator runs it: "float64", "float32" (its function body
    # or kernel computes in float32) or "" (onnx 1.23's evaluator has no kernel, or a wrong one: see the case)


def _rng(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _file(case: OneNode, path: Path, shapes: list[Any] | None = None) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    types = {np.dtype("float64"): TensorProto.DOUBLE, np.dtype("float32"): TensorProto.FLOAT,
             np.dtype("int64"): TensorProto.INT64}
    single = any(v.dtype == np.float32 for v in case.inputs.values())
    inputs = [helper.make_tensor_value_info(k, types[v.dtype], list(v.shape)) for k, v in case.inputs.items()]
    inits = [numpy_helper.from_array(v, k) for k, v in case.constants.items()]
    order = list(case.order or (*case.inputs, *case.constants))
    outs = [f"y{i}" for i in range(case.outputs)]
    node = helper.make_node(case.op, order, outs, **case.attrs)
    declared, kind = shapes or [None] * len(outs), TensorProto.FLOAT if single else TensorProto.DOUBLE
    results = [helper.make_tensor_value_info(o, kind, d) for o, d in zip(outs, declared, strict=True)]
    graph = helper.make_graph([node], case.op, inputs, results, initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 28)]), str(path))
    return path


def _lp_pool_reference(x: Any, p: float, kernel: tuple[int, ...], stride: tuple[int, ...],
                       pads: tuple[int, ...], dilation: tuple[int, ...] = (1, 1)) -> Any:
    """(Σ |x|^p over each window)^(1/p), the windows taken by unfold over the zero-padded input."""
    padded = F.pad(x.abs() ** p, (pads[1], pads[3], pads[0], pads[2]))
    cols = F.unfold(padded, kernel, dilation=dilation, stride=stride)  # (N, C·kh·kw, L)
    n, c = x.shape[:2]
    h = (padded.shape[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    sums = cols.reshape(n, c, kernel[0] * kernel[1], -1).sum(2)
    return (sums ** (1.0 / p)).reshape(n, c, h, -1)


def _average_pool_reference(x: Any, kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, ...],
                            dilation: tuple[int, int], include: bool) -> Any:
    """Each window's mean over the cells it covers inside the input (inside the input and its pads where
    `include`), the windows taken by unfold over the zero-padded input."""
    def windows(t: Any) -> Any:
        cols = F.unfold(F.pad(t, (pads[1], pads[3], pads[0], pads[2])), kernel, dilation=dilation, stride=stride)
        return cols.reshape(t.shape[0], t.shape[1], kernel[0] * kernel[1], -1).sum(2)

    sums = windows(x)
    counts = windows(torch.ones_like(x)) if not include else torch.full_like(sums, float(kernel[0] * kernel[1]))
    h = (x.shape[2] + pads[0] + pads[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    return (sums / counts).reshape(x.shape[0], x.shape[1], h, -1)


def _reverse_sequence(x: Any, lens: list[int], batch_axis: int) -> Any:
    rows = []
    for b, n in enumerate(lens):
        seq = x[b] if batch_axis == 0 else x[:, b]
        rows.append(torch.cat([seq[:n].flip(0), seq[n:]], 0))
    return torch.stack(rows, batch_axis)


def _rotary(x: Any, cos: Any, sin: Any, ids: Any, interleaved: bool, rotated: int, heads: int) -> Any:
    """ONNX's reference algorithm for RotaryEmbedding, in torch."""
    shape = x.shape
    x = x.transpose(1, 2) if x.dim() == 4 else x.reshape(shape[0], shape[1], heads, -1)  # (B, S, H, D)
    if ids is not None:
        cos, sin = cos[ids], sin[ids]
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    turn, keep = x[..., :rotated], x[..., rotated:]
    x1, x2 = (turn[..., 0::2], turn[..., 1::2]) if interleaved else turn.chunk(2, -1)
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    turned = torch.stack([real, imag], -1).reshape(turn.shape) if interleaved else torch.cat([real, imag], -1)
    out = torch.cat([turned, keep], -1)
    return out.transpose(1, 2) if len(shape) == 4 else out.reshape(shape)


def _linear_attention(q: Any, k: Any, v: Any, past: Any, decay: Any, beta: Any, q_heads: int, kv_heads: int,
                      scale: float) -> Any:
    """ONNX's reference recurrence for LinearAttention, in torch (decay None: no gating; beta None: no delta)."""
    batch, steps, _ = q.shape
    d_k, d_v = q.shape[2] // q_heads, v.shape[2] // kv_heads

    def heads(x: Any, n: int) -> Any:
        return x.reshape(batch, steps, n, -1).transpose(1, 2)

    q4, k4, v4 = heads(q, q_heads), heads(k, kv_heads), heads(v, kv_heads)
    state = past if past is not None else torch.zeros(batch, kv_heads, d_k, d_v, dtype=q.dtype)
    outs = []
    for t in range(steps):
        if decay is not None:
            state = state * torch.exp(heads(decay, kv_heads)[:, :, t])[..., None]
        new = v4[:, :, t]
        if beta is not None:
            new = heads(beta, beta.shape[-1])[:, :, t] * (new - torch.einsum("bhdm,bhd->bhm", state, k4[:, :, t]))
        state = state + k4[:, :, t][..., :, None] * new[..., None, :]
        shared = state.repeat_interleave(q_heads // kv_heads, dim=1)
        outs.append(scale * torch.einsum("bhd,bhdm->bhm", q4[:, :, t], shared))
    return torch.stack(outs, 2).transpose(1, 2).reshape(batch, steps, -1)


def _caches(positions: int, half: int) -> tuple[np.ndarray, np.ndarray]:
    angles = np.arange(positions)[:, None] / 10000 ** (np.arange(half) / half)
    return np.cos(angles), np.sin(angles)


_WITH_ZEROS = np.where(np.abs(_rng(4, 3, 5)) < 0.4, 0.0, _rng(4, 3, 5))
_COS, _SIN = _caches(10, 4)
_IDS = np.array([[0, 3, 1], [7, 2, 9]], dtype=np.int64)
_NUDGED = _rng(7, 2, 3, 4) + 0.3  # the feature sizes below want (batch, sequence, pairs) caches

CASES: dict[str, OneNode] = {
    "mvn": OneNode("MeanVarianceNormalization", {"x": _rng(0, 2, 3, 4, 5)},
                   lambda x: (x - x.mean((0, 2, 3), keepdim=True))
                   / (x.var((0, 2, 3), keepdim=True, unbiased=False).sqrt() + 1e-9),
                   catalog=frozenset({"mean", "std", "div"}), reference="float32"),
    "mvn_axes": OneNode("MeanVarianceNormalization", {"x": _rng(1, 3, 4, 5)},
                        lambda x: (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True, unbiased=False) + 1e-9),
                        {"axes": [-1]}, reference="float32"),
    "l1_normalization": OneNode("LpNormalization", {"x": _rng(2, 3, 4, 2)},
                                lambda x: x / x.abs().sum(1, keepdim=True), {"axis": 1, "p": 1},
                                catalog=frozenset({"vector_norm", "div"}),
                                reference=""),  # the evaluator divides by Σ x, not Σ |x| (ONNX's node tests: |x|)
    "l2_normalization_zero_row": OneNode(
        "LpNormalization", {"x": np.concatenate([_rng(3, 2, 4), np.zeros((1, 4))])},
        lambda x: x / torch.where((n := torch.linalg.vector_norm(x, dim=-1, keepdim=True)) == 0, 1.0, n)),
    "lp_pool_2d": OneNode("LpPool", {"x": _rng(5, 2, 3, 5, 6)},
                          lambda x: _lp_pool_reference(x, 3.0, (2, 3), (2, 1), (1, 0, 0, 1)),
                          {"kernel_shape": [2, 3], "p": 3, "strides": [2, 1], "pads": [1, 0, 0, 1]},
                          catalog=frozenset({"abs", "pow", "conv2d"})),
    "lp_pool_dilated": OneNode("LpPool", {"x": _rng(6, 1, 2, 6, 6)},
                               lambda x: _lp_pool_reference(x, 2.0, (2, 2), (1, 1), (0, 0, 0, 0), (2, 2)),
                               {"kernel_shape": [2, 2], "dilations": [2, 2]}, catalog=frozenset({"sqrt"})),
    # AveragePool where torch's average pool cannot go: each window's sum (a convolution with ones) over its count
    "average_pool_dilated": OneNode("AveragePool", {"x": _rng(21, 2, 3, 7, 6)},
                                    lambda x: _average_pool_reference(x, (2, 3), (1, 2), (1, 1, 0, 2), (2, 2), False),
                                    {"kernel_shape": [2, 3], "strides": [1, 2], "pads": [1, 1, 0, 2],
                                     "dilations": [2, 2]}, catalog=frozenset({"conv2d", "mul"})),
    "average_pool_dilated_counting_pads": OneNode(
        "AveragePool", {"x": _rng(22, 1, 2, 6, 6)},
        lambda x: _average_pool_reference(x, (3, 3), (2, 2), (1, 1, 1, 1), (2, 1), True),
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [2, 1],
         "count_include_pad": 1}, catalog=frozenset({"conv2d", "mul"})),
    "average_pool_wide_pads": OneNode("AveragePool", {"x": _rng(23, 1, 2, 5, 5)},
                                      lambda x: _average_pool_reference(x, (3, 3), (1, 1), (2, 2, 2, 2), (1, 1), False),
                                      {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2]},
                                      catalog=frozenset({"conv2d", "mul"})),
    "lp_pool_1d": OneNode("LpPool", {"x": _rng(8, 2, 3, 7)},
                          lambda x: _lp_pool_reference(x.unsqueeze(2), 2.0, (1, 3), (1, 2), (0, 1, 0, 1))
                          .squeeze(2), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    "global_lp_pool": OneNode("GlobalLpPool", {"x": _rng(9, 2, 3, 4, 4)},
                              lambda x: torch.linalg.vector_norm(x, 3.0, dim=(2, 3), keepdim=True), {"p": 3},
                              catalog=frozenset({"vector_norm"}), reference=""),  # no GlobalLpPool kernel
    "shrink": OneNode("Shrink", {"x": _rng(10, 3, 7) * 2},
                      lambda x: torch.where(x > 0.625, x - 0.25,
                                            torch.where(x < -0.625, x + 0.25, torch.zeros_like(x))),
                      {"lambd": 0.625, "bias": 0.25}, catalog=frozenset({"shrink"})),
    "cumprod_zeros": OneNode("CumProd", {"x": _WITH_ZEROS}, lambda x: torch.cumprod(x, 1),
                             constants={"axis": np.array(1)}, catalog=frozenset({"cumprod"})),
    "cumprod_reverse_exclusive": OneNode(
        "CumProd", {"x": _WITH_ZEROS},
        lambda x: torch.cat([torch.cumprod(x.flip(0), 0)[:-1].flip(0), torch.ones_like(x[:1])], 0),
        {"reverse": 1, "exclusive": 1}, constants={"axis": np.array(0)}),
    "reverse_sequence_time_major": OneNode("ReverseSequence", {"x": _rng(11, 4, 3, 2)},
                                           lambda x: _reverse_sequence(x, [4, 2, 1], 1),
                                           constants={"lens": np.array([4, 2, 1], dtype=np.int64)},
                                           catalog=frozenset({"index"})),
    "reverse_sequence_batch_major": OneNode("ReverseSequence", {"x": _rng(12, 3, 5)},
                                            lambda x: _reverse_sequence(x, [0, 3, 5], 0),
                                            {"batch_axis": 0, "time_axis": 1},
                                            constants={"lens": np.array([0, 3, 5], dtype=np.int64)}),
    "center_crop_pad": OneNode("CenterCropPad", {"x": _rng(13, 2, 5, 4)},
                               lambda x: F.pad(x[:, 1:4, :], (1, 2)),
                               constants={"shape": np.array([3, 7], dtype=np.int64)}, attrs={"axes": [1, 2]},
                               catalog=frozenset({"slice", "pad"})),
    "eye_like": OneNode("EyeLike", {"x": _rng(14, 3, 4)}, lambda x: x * torch.from_numpy(np.eye(3, 4, 1))),
    # (written as x · EyeLike(x, k=1) by _one_node_file)
    "rotary_4d": OneNode("RotaryEmbedding", {"x": _rng(15, 2, 2, 3, 8)},
                         lambda x: _rotary(x, torch.from_numpy(_COS), torch.from_numpy(_SIN),
                                           torch.from_numpy(_IDS), False, 8, 2),
                         constants={"cos": _COS, "sin": _SIN, "ids": _IDS}, catalog=frozenset({"mul", "concat"})),
    "rotary_3d_interleaved_partial": OneNode(
        "RotaryEmbedding", {"x": _rng(16, 2, 3, 20), "cos": np.cos(_NUDGED), "sin": np.sin(_NUDGED)},
        lambda x, cos, sin: _rotary(x, cos, sin, None, True, 8, 2),
        {"num_heads": 2, "interleaved": 1, "rotary_embedding_dim": 8}),
    "swiglu": OneNode("SwiGLU", {"a": _rng(17, 3, 6), "b": _rng(18, 3, 6)},
                      lambda a, b: a * torch.sigmoid(1.75 * a) * b, {"alpha": 1.75},
                      catalog=frozenset({"silu", "mul"})),
    "causal_conv_silu_past": OneNode(
        "CausalConvWithState", {"x": _rng(19, 2, 3, 5), "w": _rng(20, 3, 1, 3), "b": _rng(21, 3),
                                "past": _rng(22, 2, 3, 2)},
        lambda x, w, b, past: F.silu(F.conv1d(torch.cat([past, x], 2), w, b, groups=3)),
        {"activation": "silu"}, outputs=2, catalog=frozenset({"concat", "conv1d", "silu"}),
        reference="float32"),  # the evaluator's SiLU runs in float32
    "linear_attention_gated_delta_gqa": OneNode(
        "LinearAttention", {"q": _rng(25, 2, 3, 16), "k": _rng(26, 2, 3, 8) * 0.5, "v": _rng(27, 2, 3, 6),
                            "past": _rng(28, 2, 2, 4, 3) * 0.3, "decay": -np.abs(_rng(29, 2, 3, 8)),
                            "beta": 1 / (1 + np.exp(-_rng(30, 2, 3, 2)))},
        lambda q, k, v, past, decay, beta: _linear_attention(q, k, v, past, decay, beta, 4, 2, 0.5),
        {"q_num_heads": 4, "kv_num_heads": 2}, outputs=2, reference="float32",
        catalog=frozenset({"exp", "matmul", "mul", "add"})),
    "linear_attention_linear_scaled": OneNode(
        "LinearAttention", {"q": _rng(31, 1, 4, 6), "k": _rng(32, 1, 4, 6), "v": _rng(33, 1, 4, 4)},
        lambda q, k, v: _linear_attention(q, k, v, None, None, None, 2, 2, 0.375),
        {"q_num_heads": 2, "kv_num_heads": 2, "update_rule": "linear", "scale": 0.375}, outputs=2,
        reference="float32"),
    "causal_conv_plain": OneNode("CausalConvWithState", {"x": _rng(23, 1, 2, 6), "w": _rng(24, 2, 1, 4)},
                                 lambda x, w: F.conv1d(F.pad(x, (3, 0)), w, groups=2),
                                 catalog=frozenset({"pad", "conv1d"})),
}


def _one_node_file(name: str, path: Path, single: bool = False) -> Path:
    """The case's file; `single`: in float32 (for a reference that computes in float32)."""
    case = CASES[name]
    if single:
        case = OneNode(case.op, {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in case.inputs.items()},
                       case.torch_fn, case.attrs, {k: v.astype(np.float32) if v.dtype.kind == "f" else v
                                                   for k, v in case.constants.items()}, case.outputs, case.order)
    if name != "eye_like":
        return _file(case, path)
    from onnx import TensorProto, helper

    kind = TensorProto.FLOAT if single else TensorProto.DOUBLE
    nodes = [helper.make_node("EyeLike", ["x"], ["eye"], k=1), helper.make_node("Mul", ["x", "eye"], ["y0"])]
    graph = helper.make_graph(nodes, "eye", [helper.make_tensor_value_info("x", kind, [3, 4])],
                              [helper.make_tensor_value_info("y0", kind, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 28)]), str(path))
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_one_node_files_match_the_reference_and_autograd(name: str, tmp_path: Path) -> None:
    from onnx.reference import ReferenceEvaluator

    case = CASES[name]
    path = _one_node_file(name, tmp_path / f"{name}.onnx")
    model = open_model(path)
    _no_unsupported(model.graph)
    made = {n.op.name for n in model.graph.ops}
    assert case.catalog <= made, f"{name}: made {sorted(made)}"
    floats = {k: v for k, v in case.inputs.items() if v.dtype.kind == "f"}
    tensors = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in floats.items()}
    out = case.torch_fn(*tensors.values())
    if case.reference:  # the torch version is ONNX's definition: its reference evaluator on the same inputs
        single = case.reference == "float32"
        fed = {k: v.astype(np.float32) if single and v.dtype.kind == "f" else v for k, v in case.inputs.items()}
        with np.errstate(invalid="ignore"):  # the evaluator's LpNormalization divides 0 by 0 before it picks 0
            reference = ReferenceEvaluator(str(_one_node_file(name, tmp_path / "ref.onnx", single))).run(None, fed)
        np.testing.assert_allclose(out.detach().numpy(), reference[0], rtol=1e-5 if single else 1e-12,
                                   atol=1e-6 if single else 1e-12,
                                   err_msg=f"{name}: the torch version differs from ONNX's reference")
    expected = [out.detach().numpy()]
    if case.outputs > 1:
        expected.append(reference[1].astype(np.float64))
    y = np.random.default_rng(99).standard_normal(expected[0].shape)
    loss_tensor = F.mse_loss(out, torch.from_numpy(y))
    loss_tensor.backward()
    loss = float(loss_tensor.detach())
    for backend in BACKENDS:
        s = open_session(path, backend=backend, dtype="float64", data={**case.inputs, "y": y}, loss="mse")
        s.run_to_end()
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), expected[0], rtol=1e-12,
                                   atol=1e-12, err_msg=f"{name} {backend}: forward")
        got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
        assert abs(got - loss) <= 1e-12 * max(1.0, abs(loss)), f"{name} {backend}: loss"
        for k, t in tensors.items():
            assert t.grad is not None
            err = zoo.relative(s.backend.to_numpy(s.grad(k)), t.grad.numpy())
            assert err <= 1e-10, f"{name} {backend}: gradient of {k}: relative difference {err:.3g}"
        if case.outputs > 1:  # the state handed on: a causal convolution's last k − 1 steps, linear attention's S
            (second,) = [n for n in s.graph if n.name == "y1" or n.meta.get("returns") == "y1"]
            np.testing.assert_allclose(s.backend.to_numpy(s.value(second.name)), expected[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "says"), [
    ("reverse_sequence_time_major", "sequence lengths computed at run time"),
    ("center_crop_pad", "CenterCropPad shape computed at run time"),
    ("cumprod_zeros", "CumProd axis computed at run time"),
])
def test_run_time_lengths_shapes_and_axes_are_refused_by_name(name: str, says: str, tmp_path: Path) -> None:
    """The same files with the integer operand an input of the run instead of a constant of the file."""
    case = CASES[name]
    moved = OneNode(case.op, {**case.inputs, **case.constants}, case.torch_fn, case.attrs)
    shape = list(case.torch_fn(*(torch.from_numpy(v) for v in case.inputs.values())).shape)
    model = open_model(_file(moved, tmp_path / f"{name}.onnx", [shape]))
    placeholders = [n for n in model.graph if n.op.name == "unsupported"]
    assert len(placeholders) == 1 and says in placeholders[0].meta["reason"], [n.meta for n in placeholders]


def test_readme_shows_todays_onnx_coverage() -> None:
    """The second line `propscope ops --coverage` prints, as the README quotes it."""
    from propscope.graph.readers import coverage

    line = coverage.onnx_coverage().summary()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert line in readme, f"README's ONNX coverage line is stale; today: {line}"
    assert coverage.onnx_coverage().status.get("LinearAttention") == coverage.MAPPED


@pytest.mark.parametrize("attrs", [{"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
                                   {"kernel_shape": [3], "strides": [2], "ceil_mode": 1, "p": 3},
                                   {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1, "pads": [1, 0, 1, 0]}],
                         ids=["2d", "1d-p3", "2d-pads"])
def test_lp_pool_ceil_mode_sums_the_windows_as_onnxruntime(attrs: dict[str, Any], tmp_path: Path) -> None:
    """With ceil_mode the last window may hang over the end: the sum over what it covers, as onnxruntime computes
    it (onnx 1.23's reference evaluator scales a clipped average by the whole window's size, so it differs there)."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    shape = [1, 2] + [6] * len(attrs["kernel_shape"])
    graph = helper.make_graph([helper.make_node("LpPool", ["x"], ["y"], **attrs)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = 10  # what onnxruntime reads
    path = tmp_path / "lp_pool.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    (want,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    s = open_session(path, dtype="float64", data={"x": x}, loss="none")
    s.run_to_end()
    np.testing.assert_allclose(s.value(s.prediction_node.name), want, rtol=1e-5, atol=1e-6)
