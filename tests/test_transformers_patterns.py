"""The ATen patterns Hugging Face models are made of, each in a small module exported as is and after
`run_decompositions()`, opened and traced on both backends and compared with torch autograd (float64).

T5's relative-position buckets (logarithms truncated by a cast to int64), casts of computed values to int and
bool, Whisper's frozen sinusoidal positions (a parameter with `requires_grad=False` is a constant), BLOOM's
`baddbmm` with its β and α (ALiBi), `addmm` with them, CLIP's pooling at the first end token (the argmax
of a mask computed from the data), GPT-J's `repeat_interleave`, a mixture of experts' top-k router, grouped-query
attention in one `scaled_dot_product_attention`, wav2vec2's weight norm and vector norms; and ONNX's GatherND
(dynamo's export of CLIP's pooling), TopK and Flatten up to the last axis.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opcheck import chained_vjps

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
nn = torch.nn
pytestmark = pytest.mark.torch


class RelativeBuckets(nn.Module):
    """T5's bias per query-key offset: small offsets exact, large ones on a log scale, truncated to int64."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.bias = nn.Linear(4, 6), nn.Embedding(8, 1)

    def forward(self, x: Any) -> Any:
        offset = torch.arange(6)[None, :] - torch.arange(6)[:, None]
        distance = offset.abs()
        large = 2 + (torch.log(distance.float().clamp(min=1) / 2) / math.log(8) * 4).to(torch.long)
        buckets = torch.where(distance < 2, distance, torch.minimum(large, torch.full_like(large, 7)))
        buckets = buckets + (offset > 0).to(torch.long) * 0  # a bool cast folded too
        h = self.fc(x)
        return h @ self.bias(buckets)[..., 0]


class Casts(nn.Module):
    """Computed values cast to int64 (truncated toward zero, no gradient) and to bool (a mask)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x: Any) -> Any:
        h = 3 * self.fc(x)
        whole = h.to(torch.int64)  # −2.7 → −2, 2.7 → 2
        mask = (h - whole).to(torch.bool)  # the fractions that are not 0
        return torch.where(mask, h, 0.5) + whole * h


class Frozen(nn.Module):
    """Whisper's encoder positions are a parameter the model never trains (requires_grad_(False))."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.positions = nn.Linear(4, 3), nn.Parameter(torch.randn(2, 3))
        self.positions.requires_grad_(False)

    def forward(self, x: Any) -> Any:
        return torch.tanh(self.fc(x) + self.positions)


class ScaledProducts(nn.Module):
    """BLOOM's attention scores: baddbmm(alibi, q, kᵀ, β=1, α=1/√d); and addmm with both scalings."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.fc = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(4, 3)
        self.alibi = nn.Parameter(torch.randn(2, 3, 3))

    def forward(self, x: Any) -> Any:
        q, k = self.q(x).reshape(2, 3, 2), self.k(x).reshape(2, 2, 3)
        scores = torch.baddbmm(self.alibi, q, k, beta=1.0, alpha=0.5)
        only = torch.baddbmm(self.alibi, q, k, beta=0.0, alpha=1.0)  # β = 0: the bias is ignored
        both = torch.baddbmm(self.alibi, q, k, beta=-2.0, alpha=1.5)
        mixed = torch.addmm(self.fc.bias, x, self.fc.weight.t(), beta=0.5, alpha=2.0)
        return scores.sum(-1) + only.amax(-1) * both.mean(-1) + mixed


class FirstEndToken(nn.Module):
    """CLIP's text pooling: the state at the first position where the data says "end" (argmax of a mask)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Any) -> Any:
        h = torch.tanh(self.fc(x))
        first = (h > 0.2).int().argmax(dim=-1)
        return h[torch.arange(h.shape[0]), first][:, None] * h


class GroupedQueryAttention(nn.Module):
    """Llama-style attention with 4 query heads sharing 2 key/value heads, as torch's sdpa does it (enable_gqa)."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.kv = nn.Linear(4, 4 * 3 * 2), nn.Linear(4, 2 * 2 * 3 * 2)

    def forward(self, x: Any) -> Any:
        q = self.q(x).reshape(2, 4, 3, 2)  # (batch, heads, positions, depth)
        k, v = self.kv(x).reshape(2, 2, 2, 3, 2).unbind(1)
        out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return out.reshape(2, -1)


class RepeatInterleave(nn.Module):
    """GPT-J's rotary angles, each repeated for its pair of features (a constant), and computed values repeated
    in place along an axis and flattened (no dim)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x: Any) -> Any:
        angles = torch.repeat_interleave(torch.sin(torch.arange(3, dtype=torch.float64) / 2)[None], 2, dim=1)  # (1, 6)
        h = self.fc(x) * angles
        flat = torch.repeat_interleave(h[:, :2], 2)
        return torch.cat([h.repeat_interleave(2, dim=-1), h.reshape(2, 3, 2).repeat_interleave(3, dim=1).flatten(1),
                          flat.reshape(2, 4)], dim=1)


class Router(nn.Module):
    """A mixture of experts' router (Mixtral's batched experts): the 2 best of 4 experts per token by softmax
    weight, renormalised, each expert's weight matrix picked by its index; a sort of computed values too."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.experts = nn.Linear(4, 4), nn.Parameter(torch.randn(4, 3, 4))

    def forward(self, x: Any) -> Any:
        weights, chosen = torch.topk(torch.softmax(self.gate(x), dim=-1), 2, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        picked = self.experts[chosen.reshape(-1)]  # (tokens · 2, 3, 4)
        out = (picked @ x.repeat_interleave(2, dim=0)[:, :, None])[..., 0] * weights.reshape(-1, 1)
        ranked, _ = torch.sort(x, dim=-1, descending=True)
        smallest = torch.topk(x, 1, dim=0, largest=False).values
        return torch.cat([out.reshape(2, 2, 3).sum(1), ranked * smallest], dim=1)


class WeightNorms(nn.Module):
    """wav2vec2's positional convolution under weight_norm (the norm over every axis but 2), a Linear under it
    (but 0), and vector norms of computed values of orders 2, 1, ∞ and 3."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(2, 2, 3, padding=1), name="weight", dim=2)
        self.fc = nn.utils.parametrizations.weight_norm(nn.Linear(4, 6))

    def forward(self, x: Any) -> Any:
        h = self.conv(self.fc(x).reshape(2, 2, 3)).reshape(2, 6)
        norms = [torch.linalg.vector_norm(h, dim=-1, keepdim=True), torch.linalg.vector_norm(h, 1, dim=(0, 1)),
                 torch.linalg.vector_norm(h, float("inf"), dim=0), torch.linalg.vector_norm(h, 3).reshape(1)]
        return torch.cat([h / norms[0], (norms[1] * norms[2] * norms[3]).reshape(1, -1).expand(2, -1)], dim=1)


class ResponseNorm(nn.Module):
    """ConvNeXt V2's global response norm as timm writes it, torch.addcmul(β, γ, x · N(x)) + x, and addcdiv beside
    it with a value."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.gamma, self.beta = nn.Linear(4, 6), nn.Parameter(torch.randn(6)), nn.Parameter(torch.randn(6))

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        g = h.norm(dim=0, keepdim=True)
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return torch.addcmul(self.beta, self.gamma, h * n) + h + torch.addcdiv(h, self.gamma, h.abs() + 1, value=0.5)


class RoundedDivision(nn.Module):
    """EdgeNeXt's positional encoding (an arange floor-divided by 2, integers both ways) and floor/trunc division
    of constants and of computed values (a floor passes no gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x: Any) -> Any:
        steps = torch.arange(6)
        scale = 10.0 ** (2 * torch.div(steps, 2, rounding_mode="floor").double() / 6)  # float64: no float32 island
        signed = torch.div(steps - 3, -2, rounding_mode="trunc") + torch.div(steps - 2.5, 2.0, rounding_mode="floor")
        h = self.fc(x)
        return h / scale + signed * h + torch.div(h, 0.7, rounding_mode="floor") * h


class ShapedLike(nn.Module):
    """LeViT's batch norm over flattened tokens, shaped back with reshape_as; view_as beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.bn = nn.Linear(4, 6), nn.BatchNorm1d(3)

    def forward(self, x: Any) -> Any:
        h = self.fc(x).reshape(2, 2, 3)
        return self.bn(h.flatten(0, 1)).reshape_as(h).view_as(self.fc(x).reshape(2, 2, 3)).reshape(2, 6)


MODELS = {"relative_buckets": RelativeBuckets, "casts": Casts, "frozen": Frozen, "scaled_products": ScaledProducts,
          "first_end_token": FirstEndToken, "grouped_query_attention": GroupedQueryAttention,
          "repeat_interleave": RepeatInterleave, "router": Router, "weight_norms": WeightNorms,
          "response_norm": ResponseNorm, "rounded_division": RoundedDivision,
          "shaped_like": ShapedLike}


def export(cls: type, x: np.ndarray, path: Path, decompose: bool) -> Any:
    torch.manual_seed(0)
    model = cls().double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (torch.from_numpy(x),))
        if decompose:
            program = program.run_decompositions()
        torch.export.save(program, str(path))
    return model


@pytest.mark.parametrize("decompose", [False, True], ids=["as_is", "decomposed"])
@pytest.mark.parametrize("name", list(MODELS))
def test_pattern_matches_autograd(name: str, decompose: bool, tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((2, 4))
    reference = export(MODELS[name], x, tmp_path / f"{name}.pt2", decompose)
    model = open_model(tmp_path / f"{name}.pt2")
    unsupported = [n.meta.get("original_op") for n in model.graph if n.op.name == "unsupported"]
    assert not unsupported, f"unsupported: {unsupported} ({model.warnings})"

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out = reference(xt)
    weights = torch.from_numpy(np.random.default_rng(1).standard_normal(tuple(out.shape)))
    (out * weights).sum().backward()

    for backend in ("numpy", "torch"):
        s = open_session(model, backend=backend, dtype="float64", data={"x": x}, loss="none")
        s.run_to_end()
        got = s.backend.to_numpy(s.value(s.prediction_node.name))
        np.testing.assert_allclose(got, out.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=backend)
    grads = chained_vjps(s, weights.numpy())
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    parameters = {n.name for n in s.graph.leaves if n.op.name == "parameter"}
    trained = {pname for pname, p in reference.named_parameters() if p.requires_grad}
    assert parameters == trained, "a frozen parameter is a constant, every trained one a parameter"
    for pname, p in reference.named_parameters():
        if p.requires_grad:
            np.testing.assert_allclose(grads[pname], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=pname)


def test_truncation_is_folded_as_torch_truncates(tmp_path: Path) -> None:
    """The buckets are the integers torch computes, not the logarithms before the cast."""
    export(RelativeBuckets, np.zeros((2, 4)), tmp_path / "buckets.pt2", decompose=False)
    model = open_model(tmp_path / "buckets.pt2")
    (embedding,) = [n for n in model.graph if n.op.name == "embedding"]
    ids = model.arrays[embedding.inputs[0].name]
    offset = np.abs(np.arange(6)[None, :] - np.arange(6)[:, None])
    large = 2 + np.trunc(np.log(np.maximum(offset, 1) / 2) / math.log(8) * 4)
    assert np.array_equal(ids, np.where(offset < 2, offset, np.minimum(large, 7)))


def _gather_nd_file(path: Path, batch_dims: int, computed: bool) -> tuple[np.ndarray, Any]:
    """x (2, 3, 4) → GatherND; the indices a constant, or computed from x as CLIP's pooling computes them
    (the argmax along one axis, next to each row's own position)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    if computed:  # rows [b, argmax_j x[b, j, 0]]: (2, 2)
        inits += [numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
                  numpy_helper.from_array(np.array([[0], [1]], dtype=np.int64), "rows")]
        nodes += [helper.make_node("Gather", ["x", "zero"], ["col"], axis=2, name="col"),  # (2, 3, 1)
                 helper.make_node("ArgMax", ["col"], ["best"], axis=1, keepdims=0, name="best"),  # (2, 1)
                 helper.make_node("Concat", ["rows", "best"], ["indices"], axis=1, name="indices")]
    elif batch_dims:
        inits.append(numpy_helper.from_array(np.array([[[2], [0]], [[1], [-1]]], dtype=np.int64), "indices"))
    else:
        inits.append(numpy_helper.from_array(np.array([[[1, 2], [0, -2]], [[1, 0], [0, 1]]], dtype=np.int64),
                                             "indices"))
    nodes.append(helper.make_node("GatherND", ["x", "indices"], ["y"], batch_dims=batch_dims, name="gather"))
    graph = helper.make_graph(nodes, "gather_nd", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return np.random.default_rng(2).standard_normal((2, 3, 4)), model


@pytest.mark.parametrize(("batch_dims", "computed"), [(0, False), (1, False), (0, True)],
                         ids=["constant", "batch_dims", "computed"])
def test_gather_nd_picks_and_scatters_back_as_onnx_says(batch_dims: int, computed: bool, tmp_path: Path) -> None:
    from onnx.reference import ReferenceEvaluator

    path = tmp_path / "gather_nd.onnx"
    x, proto = _gather_nd_file(path, batch_dims, computed)
    model = open_model(path)
    assert not [n.meta.get("reason") for n in model.graph if n.op.name == "unsupported"], model.warnings

    def picked(values: np.ndarray) -> np.ndarray:
        return np.asarray(ReferenceEvaluator(proto).run(None, {"x": values})[0])

    want = picked(x)
    upstream = np.random.default_rng(3).standard_normal(want.shape)
    # the gradient of sum(upstream · GatherND(x)) by central differences (linear in x where the argmax holds)
    steps = 1e-6 * np.eye(x.size).reshape(x.size, *x.shape)
    expected = np.array([np.sum(upstream * (picked(x + e) - picked(x - e))) / 2e-6 for e in steps]).reshape(x.shape)
    for backend in ("numpy", "torch"):
        s = open_session(model, backend=backend, dtype="float64", data={"x": x}, loss="none")
        s.run_to_end()
        np.testing.assert_array_equal(s.backend.to_numpy(s.value(s.prediction_node.name)), want, err_msg=backend)
        if backend == "numpy":
            np.testing.assert_allclose(chained_vjps(s, upstream)["x"], expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("axis", [2, -2, -1])
def test_onnx_flatten_up_to_the_last_axis(axis: int, tmp_path: Path) -> None:
    """Flatten's axis may equal the rank: (2, 6) → (12, 1), as the TorchScript exporter writes BART's positions."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"], axis=axis, name="flat")], "flatten",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "f.onnx"))
    x = np.arange(12.0).reshape(2, 6)
    s = open_session(tmp_path / "f.onnx", dtype="float64", data={"x": x}, loss="none")
    s.run_to_end()
    want = x.reshape({2: (12, 1), -2: (1, 12), -1: (2, 6)}[axis])
    np.testing.assert_array_equal(s.value(s.prediction_node.name), want)


@pytest.mark.parametrize("largest", [1, 0])
def test_onnx_topk_of_computed_values(largest: int, tmp_path: Path) -> None:
    """TopK of computed values: the indices an argsort, the values gathered, the gradient back to the picked."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    nodes = [helper.make_node("Tanh", ["x"], ["h"], name="tanh"),
             helper.make_node("TopK", ["h", "k"], ["values", "indices"], axis=1, largest=largest, name="topk"),
             helper.make_node("Cast", ["indices"], ["where"], to=TensorProto.DOUBLE, name="cast"),
             helper.make_node("Mul", ["values", "where"], ["y"], name="mul")]
    graph = helper.make_graph(nodes, "topk", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
                              [numpy_helper.from_array(np.array([3], dtype=np.int64), "k")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(proto, str(tmp_path / "topk.onnx"))
    x = np.random.default_rng(4).standard_normal((2, 5))
    want = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    upstream = np.random.default_rng(5).standard_normal(want.shape)
    for backend in ("numpy", "torch"):
        s = open_session(tmp_path / "topk.onnx", backend=backend, dtype="float64", data={"x": x}, loss="none")
        s.run_to_end()
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want, rtol=1e-14)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    values, indices = torch.topk(torch.tanh(xt), 3, dim=1, largest=bool(largest))
    (values * indices * torch.from_numpy(upstream)).sum().backward()
    np.testing.assert_allclose(chained_vjps(s, upstream)["x"], xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_an_unsupported_op_without_a_shape_is_named_as_the_cause(tmp_path: Path) -> None:
    """An unsupported op whose output shape the file leaves out (data-dependent: NonZero of computed values)
    makes no node; the message and the ops after it name it and its reason, not only the ops that follow."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["h"], name="relu"),
             helper.make_node("NonZero", ["h"], ["where"], name="nonzero"),
             helper.make_node("Transpose", ["where"], ["pairs"], name="pairs"),
             helper.make_node("Cast", ["pairs"], ["y"], to=TensorProto.DOUBLE, name="cast")]
    graph = helper.make_graph(nodes, "nonzero", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [4, 2])],
                              value_info=[helper.make_tensor_value_info("pairs", TensorProto.INT64, [4, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "nz.onnx"))
    model = open_model(tmp_path / "nz.onnx")
    (placeholder,) = [n for n in model.graph if n.op.name == "unsupported"]
    assert placeholder.meta["original_op"] == "Transpose"
    assert placeholder.meta["reason"] == "an output of unsupported op NonZero"
    assert model.warnings[0].endswith("('pairs'), which lacks an output of unsupported op NonZero")


def test_float32_islands_are_computed_in_the_sessions_dtype_and_said(tmp_path: Path) -> None:
    """Llama's softmax and RMSNorm run in float32 inside a float64 model; propscope computes them in the session's
    dtype (float64 here) and says so once."""

    class Island(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 5)

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.fc(x).float(), dim=-1).to(x.dtype)

    x = np.random.default_rng(0).standard_normal((2, 4))
    model = export(Island, x, tmp_path / "island.pt2", decompose=False)
    opened = open_model(tmp_path / "island.pt2")
    assert len(opened.warnings) == 1 and opened.warnings[0].startswith("2 cast(s) between float dtypes")
    s = open_session(opened, dtype="float64", data={"x": x}, loss="none")
    s.run_to_end()
    with torch.no_grad():
        exact = torch.softmax(model.fc(torch.from_numpy(x)), dim=-1).numpy()
        rounded = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(s.value(s.prediction_node.name), exact, rtol=1e-14)
    assert np.abs(rounded - exact).max() > 1e-10  # torch's own numbers went through float32
