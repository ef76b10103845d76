"""ONNX files at the opsets people have (7 to 13: the Model Zoo, years of exports), read as the opset they import.

Many operators had other forms before opset 13: attributes that later became inputs (Slice-1, Pad-2, Clip-6,
Squeeze/Unsqueeze-1, ReduceMean-1, Split-2, TopK-1, Reshape-1), Softmax, LogSoftmax and Hardmax over all the axes
from `axis` on (the input read as a matrix, not along one axis), Upsample and Resize-10 (asymmetric coordinates),
BatchNormalization and Dropout with `is_test`, legacy broadcasting (`broadcast`/`axis`, before opset 7), Cast-1's
type names. Each form is written by hand with `onnx.helper`, run on propscope's NumPy and torch backends (as an ONNX
backend) and compared with a NumPy transcription of the operator's definition at that opset, and with onnxruntime
where it is installed and runs that opset. A small network exported by the TorchScript exporter at opsets 9 and 10
(Upsample-9, Resize-10, Clip-6, Pad-2, ReduceSum-1, Split-2, LRN, Softmax over channels) steps to the end of the
backward pass with autograd's loss, input gradient and parameter gradients.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from propscope.debugger.onnx_backend import NumpyOnnxBackend, TorchOnnxBackend  # noqa: E402
from propscope.graph.readers.onnx_backend import OnnxRunError  # noqa: E402
from propscope.graph.readers.onnx_reader import open_proto  # noqa: E402

IR_VERSION = {**dict.fromkeys(range(1, 9), 3), 9: 4, 10: 5, 11: 6, 12: 7, 13: 7}
HAS_TORCH = importlib.util.find_spec("torch") is not None
RNG = np.random.default_rng(0)
X4 = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
IMAGE = RNG.standard_normal((1, 2, 3, 4)).astype(np.float32)


def _model(nodes: list[Any], shape: tuple[int, ...], opset: int, inits: tuple[Any, ...] = (),
           outputs: tuple[str, ...] = ("y",)) -> Any:
    graph = helper.make_graph(nodes, "old", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION[opset])


# -- references: each operator as its definition at that opset reads, element by element where it is short ------
def _rows(x: np.ndarray, axis: int) -> np.ndarray:
    """Before opset 13 Softmax, LogSoftmax and Hardmax read their input as a matrix (rows: the axes before `axis`)."""
    return x.reshape(math.prod(x.shape[:axis]), -1)


def softmax_2d(x: np.ndarray, axis: int) -> np.ndarray:
    rows = _rows(x, axis)
    e = np.exp(rows - rows.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)


def hardmax_2d(x: np.ndarray, axis: int) -> np.ndarray:
    rows = _rows(x, axis)
    out = np.zeros_like(rows)
    out[np.arange(len(rows)), rows.argmax(axis=1)] = 1.0
    return out.reshape(x.shape)


def resize_reference(x: np.ndarray, out: tuple[int, int], scales: tuple[float, float], mode: str, coords: str,
                     rounding: str = "", a: float = -0.75, exclude_outside: bool = False) -> np.ndarray:
    """Resize of the last two axes, one output element at a time, as ONNX defines it."""
    def source(i: int, n: int, o: int, s: float) -> float:
        if coords == "asymmetric":
            return i / s
        if coords == "align_corners":
            return i * (n - 1) / (o - 1) if o > 1 else 0.0
        if coords == "pytorch_half_pixel" and o == 1:
            return 0.0
        return (i + 0.5) / s - 0.5

    def taps(c: float, n: int, s: float) -> list[tuple[int, float]]:
        if mode == "nearest":
            low = math.floor(c)
            pick = {"floor": low, "ceil": math.ceil(c), "simple": low if s >= 1 else math.ceil(c),
                    "round_prefer_floor": low + (c - low > 0.5), "round_prefer_ceil": low + (c - low >= 0.5)}[rounding]
            return [(min(max(pick, 0), n - 1), 1.0)]
        if mode == "linear":
            c = min(max(c, 0.0), n - 1.0)
            low = math.floor(c)
            return [(low, 1 - (c - low)), (min(low + 1, n - 1), c - low)]
        low = math.floor(c)
        t = c - low
        found = []
        for k in range(-1, 3):
            d = abs(t - k)
            w = ((a + 2) * d - (a + 3)) * d * d + 1 if d <= 1 else ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
            inside = 0 <= low + k < n
            found.append((min(max(low + k, 0), n - 1), 0.0 if exclude_outside and not inside else w))
        total = sum(w for _, w in found) if exclude_outside else 1.0
        return [(i, w / total) for i, w in found]

    h, w = x.shape[-2:]
    y = np.zeros((*x.shape[:-2], *out))
    for i in range(out[0]):
        for j in range(out[1]):
            for p, wp in taps(source(i, h, out[0], scales[0]), h, scales[0]):
                for q, wq in taps(source(j, w, out[1], scales[1]), w, scales[1]):
                    y[..., i, j] += wp * wq * x[..., p, q]
    return y


def lrn_reference(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX's LRN: the sum of squares over channels c − ⌊(size − 1)/2⌋ … c + ⌈(size − 1)/2⌉."""
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        lo, hi = max(0, c - (size - 1) // 2), min(x.shape[1] - 1, c + math.ceil((size - 1) / 2))
        square_sum = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        out[:, c] = x[:, c] / (bias + alpha / size * square_sum) ** beta
    return out


node = helper.make_node
Case = tuple[str, Any, np.ndarray, Callable[[np.ndarray], list[np.ndarray]]]


def _resize_case(name: str, op: str, opset: int, scales: list[float], out: tuple[int, int], mode: str,
                 coords: str = "asymmetric", rounding: str = "simple", **attrs: Any) -> Case:
    if op == "Upsample" and opset < 9:
        nodes, inits = [node("Upsample", ["x"], ["y"], mode=mode, scales=scales)], ()
    elif opset < 11:
        nodes, inits = [node(op, ["x", "s"], ["y"], mode=mode)], (("s", np.float32(scales)),)
    else:
        kw = {"coordinate_transformation_mode": coords, **({"nearest_mode": rounding} if mode == "nearest" else {})}
        nodes = [node(op, ["x", "roi", "s"], ["y"], mode=mode, **kw, **attrs)]
        inits = (("roi", np.zeros(0, np.float32)), ("s", np.float32(scales)))
    factors = (float(np.float32(scales[2])), float(np.float32(scales[3])))
    return (name, _model(nodes, IMAGE.shape, opset, inits), IMAGE,
            lambda x: [resize_reference(x, out, factors, mode, coords, rounding, attrs.get("cubic_coeff_a", -0.75),
                                        bool(attrs.get("exclude_outside", 0)))])


BIAS = RNG.standard_normal(3).astype(np.float32)
PER_ACTIVATION = [RNG.standard_normal((3, 4, 5)).astype(np.float32) for _ in range(4)]
PER_ACTIVATION[3] = np.abs(PER_ACTIVATION[3]) + 0.5
CASES: list[Case] = [
    # Softmax, LogSoftmax and Hardmax before opset 13: the axes from `axis` (default 1) on, read as one row
    ("softmax-11-axis1", _model([node("Softmax", ["x"], ["y"], axis=1)], X4.shape, 11), X4,
     lambda x: [softmax_2d(x, 1)]),
    ("softmax-9-default-axis", _model([node("Softmax", ["x"], ["y"])], X4.shape, 9), X4,
     lambda x: [softmax_2d(x, 1)]),
    ("logsoftmax-11-axis2", _model([node("LogSoftmax", ["x"], ["y"], axis=2)], X4.shape, 11), X4,
     lambda x: [np.log(softmax_2d(x, 2))]),
    ("hardmax-11-axis1", _model([node("Hardmax", ["x"], ["y"], axis=1)], X4.shape, 11), X4,
     lambda x: [hardmax_2d(x, 1)]),
    ("softmax-13-axis1", _model([node("Softmax", ["x"], ["y"], axis=1)], X4.shape, 13), X4,
     lambda x: [np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)]),
    ("hardmax-13-default", _model([node("Hardmax", ["x"], ["y"])], X4.shape, 13), X4,
     lambda x: [(x == x.max(axis=-1, keepdims=True)).astype(np.float32)]),
    # attributes that later became inputs
    ("slice-1", _model([node("Slice", ["x"], ["y"], starts=[1, -3], ends=[2**31 - 1, -1], axes=[1, 3])], X4.shape, 9),
     X4, lambda x: [x[:, 1:, :, -3:-1]]),
    ("pad-2-value", _model([node("Pad", ["x"], ["y"], pads=[0, 0, 1, 2, 0, 0, 2, 1], value=1.5)], X4.shape, 9),
     X4, lambda x: [np.pad(x, [(0, 0), (0, 0), (1, 2), (2, 1)], constant_values=1.5)]),
    ("pad-2-reflect", _model([node("Pad", ["x"], ["y"], pads=[0, 0, 1, 2, 0, 0, 2, 1], mode="reflect")], X4.shape, 9),
     X4, lambda x: [np.pad(x, [(0, 0), (0, 0), (1, 2), (2, 1)], mode="reflect")]),
    ("clip-6", _model([node("Clip", ["x"], ["y"], min=-0.5, max=0.7)], X4.shape, 6), X4,
     lambda x: [np.clip(x, -0.5, 0.7)]),
    ("clip-6-min-only", _model([node("Clip", ["x"], ["y"], min=-0.5)], X4.shape, 9), X4,
     lambda x: [np.maximum(x, -0.5)]),
    ("squeeze-unsqueeze-1", _model([node("Unsqueeze", ["x"], ["u"], axes=[0, 3]), node("Squeeze", ["u"], ["y"],
                                                                                          axes=[0])], X4.shape, 9),
     X4, lambda x: [x[:, :, None]]),
    ("reducemean-1-axes", _model([node("ReduceMean", ["x"], ["y"], axes=[1, 3], keepdims=0)], X4.shape, 9), X4,
     lambda x: [x.mean(axis=(1, 3))]),
    ("split-2", _model([node("Split", ["x"], ["a", "b"], axis=3, split=[2, 3])], X4.shape, 9, outputs=("a", "b")),
     X4, lambda x: [x[..., :2], x[..., 2:]]),
    ("topk-1", _model([node("TopK", ["x"], ["y", "i"], k=2, axis=1)], X4.shape, 9, outputs=("y",)), X4,
     lambda x: [-np.sort(-x, axis=1)[:, :2]]),
    ("reshape-1-attr", _model([node("Reshape", ["x"], ["y"], shape=[2, -1])], X4.shape, 4), X4,
     lambda x: [x.reshape(2, -1)]),
    ("concat-1-default-axis", _model([node("Concat", ["x", "x"], ["y"])], X4.shape, 3), X4,
     lambda x: [np.concatenate([x, x], axis=1)]),
    ("cast-1-type-names", _model([node("Cast", ["x"], ["i"], to="INT32"), node("Cast", ["i"], ["y"], to="FLOAT")],
                                 X4.shape, 5), 3 * X4, lambda x: [np.trunc(x)]),
    # legacy broadcasting: B lined up with A from `axis` on
    ("add-6-broadcast-axis1", _model([node("Add", ["x", "b"], ["y"], broadcast=1, axis=1)], X4.shape, 6,
                                     (("b", BIAS),)), X4, lambda x: [x + BIAS.reshape(3, 1, 1)]),
    ("mul-6-broadcast-trailing", _model([node("Mul", ["x", "b"], ["y"], broadcast=1)], X4.shape, 6,
                                        (("b", np.arange(5, dtype=np.float32)),)), X4,
     lambda x: [x * np.arange(5, dtype=np.float32)]),
    # is_test, spatial, experimental operators
    ("batchnorm-7-spatial0", _model([node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], spatial=0)],
                                    X4.shape, 7, tuple(zip("sbmv", PER_ACTIVATION, strict=True))), X4,
     lambda x: [(x - PER_ACTIVATION[2]) / np.sqrt(PER_ACTIVATION[3] + 1e-5) * PER_ACTIVATION[0] + PER_ACTIVATION[1]]),
    ("batchnorm-6-is-test", _model([node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], is_test=1)],
                                   X4.shape, 6, tuple(zip("sbmv", [p[:, 0, 0] for p in PER_ACTIVATION], strict=True))),
     X4, lambda x: [(x - PER_ACTIVATION[2][:, :1, :1]) / np.sqrt(PER_ACTIVATION[3][:, :1, :1] + 1e-5)
                    * PER_ACTIVATION[0][:, :1, :1] + PER_ACTIVATION[1][:, :1, :1]]),
    ("dropout-6-is-test", _model([node("Dropout", ["x"], ["y"], ratio=0.3, is_test=1)], X4.shape, 6), X4,
     lambda x: [x]),
    ("imagescaler", _model([node("ImageScaler", ["x"], ["y"], scale=0.5, bias=[1.0, 2.0, 3.0])], X4.shape, 8), X4,
     lambda x: [x * 0.5 + np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)]),
    ("lrn-size3", _model([node("LRN", ["x"], ["y"], size=3, alpha=0.01, beta=0.75, bias=2.0)], X4.shape, 9), X4,
     lambda x: [lrn_reference(x, 3, 0.01, 0.75, 2.0)]),
    ("lrn-size4", _model([node("LRN", ["x"], ["y"], size=4, alpha=0.5, beta=0.6, bias=1.0)], X4.shape, 13), X4,
     lambda x: [lrn_reference(x, 4, 0.5, 0.6, 1.0)]),
    ("depthtospace-crd", _model([node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD")], (1, 8, 2, 3), 11),
     RNG.standard_normal((1, 8, 2, 3)).astype(np.float32),
     lambda x: [x.reshape(1, 2, 2, 2, 2, 3).transpose(0, 1, 4, 2, 5, 3).reshape(1, 2, 4, 6)]),
    ("spacetodepth", _model([node("SpaceToDepth", ["x"], ["y"], blocksize=2)], (1, 2, 4, 6), 9),
     RNG.standard_normal((1, 2, 4, 6)).astype(np.float32),
     lambda x: [x.reshape(1, 2, 2, 2, 3, 2).transpose(0, 3, 5, 1, 2, 4).reshape(1, 8, 2, 3)]),
    ("onehot-9-folded", _model([node("OneHot", ["i", "d", "v"], ["h"], axis=1), node("Add", ["x", "h"], ["y"])],
                               (2, 4, 3), 9, (("i", np.array([[0, 3, -1], [2, 7, 1]])), ("d", np.array([4])),
                                              ("v", np.float32([0.5, 2.0])))),
     RNG.standard_normal((2, 4, 3)).astype(np.float32),
     lambda x: [x + np.where(np.array([[[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 1]],
                                       [[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]]]) == 1, 2.0, 0.5)]),
    # Upsample and Resize-10: asymmetric coordinates, nearest ⌊x⌋ growing and ⌈x⌉ shrinking (onnxruntime's rule)
    _resize_case("upsample-7-nearest", "Upsample", 7, [1, 1, 2, 3], (6, 12), "nearest"),
    _resize_case("upsample-9-linear", "Upsample", 9, [1, 1, 2, 2], (6, 8), "linear"),
    _resize_case("upsample-9-nearest-fractional", "Upsample", 9, [1, 1, 1.5, 2.5], (4, 10), "nearest"),
    _resize_case("resize-10-linear", "Resize", 10, [1, 1, 1.5, 2.5], (4, 10), "linear"),
    _resize_case("resize-10-nearest-shrinks", "Resize", 10, [1, 1, 0.6, 0.6], (1, 2), "nearest"),
    # Resize-11 on, the forms PyTorch's operators do not compute
    _resize_case("resize-11-linear-asymmetric", "Resize", 11, [1, 1, 1.5, 2.5], (4, 10), "linear"),
    _resize_case("resize-11-nearest-half-pixel-ceil", "Resize", 11, [1, 1, 1.5, 2.5], (4, 10), "nearest",
                 "half_pixel", "round_prefer_ceil"),
    _resize_case("resize-11-nearest-align-corners", "Resize", 11, [1, 1, 2, 2], (6, 8), "nearest",
                 "align_corners", "round_prefer_floor"),
    _resize_case("resize-11-cubic-a-exclude-outside", "Resize", 11, [1, 1, 2, 1.5], (6, 6), "cubic", "half_pixel",
                 cubic_coeff_a=-0.5, exclude_outside=1),
    _resize_case("resize-13-cubic-asymmetric", "Resize", 13, [1, 1, 0.5, 1.5], (1, 6), "cubic"),
    ("resize-13-linear-1d", _model([node("Resize", ["x", "", "s"], ["y"], mode="linear",
                                         coordinate_transformation_mode="pytorch_half_pixel")], (1, 2, 4), 13,
                                   (("s", np.float32([1, 1, 2])),)), IMAGE[:, :, 0, :].copy(),
     lambda x: [resize_reference(x[:, :, None], (1, 8), (1.0, 2.0), "linear", "pytorch_half_pixel")[:, :, 0]]),
]
RESIZES = [c for c in CASES if c[0].startswith(("upsample", "resize"))]


def _onnxruntime(model: Any, x: np.ndarray) -> list[np.ndarray] | None:
    """onnxruntime's outputs where it is installed and runs this opset (it refuses some before opset 7), else None."""
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
    except Exception:  # an operator version onnxruntime no longer implements (Dropout-6, ImageScaler, LRN of size 4)
        return None
    return list(session.run(None, {"x": x}))


@pytest.mark.parametrize("name, model, x, reference", CASES, ids=[c[0] for c in CASES])
def test_old_operator_forms_compute_as_their_opset_defines(name: str, model: Any, x: np.ndarray,
                                                          reference: Callable[[np.ndarray], list[np.ndarray]]) -> None:
    want = reference(x.astype(np.float64))
    runtime = _onnxruntime(model, x)
    for backend in (NumpyOnnxBackend, TorchOnnxBackend) if HAS_TORCH else (NumpyOnnxBackend,):
        got = backend.prepare(model).run([x])
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=f"{name} on {backend.__name__}")
        for g, w in zip(got, runtime or [], strict=False):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=f"{name}: onnxruntime")


@pytest.mark.parametrize("name, model, x, reference", RESIZES, ids=[c[0] for c in RESIZES])
def test_an_axis_too_long_for_a_weight_matrix_blends_its_taps(name: str, model: Any, x: np.ndarray,
                                                              reference: Callable[[np.ndarray], list[np.ndarray]],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Linear and cubic resizes multiply by an (out, in) matrix per axis; past MATRIX_LIMIT entries (a long audio
    axis would need gigabytes) each tap's rows are picked and weighted instead, with the same numbers."""
    from propscope.graph.readers.onnx_ops import resize

    monkeypatch.setattr(resize, "MATRIX_LIMIT", 0)
    ops = {n.op.name for n in open_proto(model).graph}
    assert "matmul" not in ops
    np.testing.assert_allclose(NumpyOnnxBackend.prepare(model).run([x])[0], reference(x.astype(np.float64))[0],
                               rtol=2e-5, atol=2e-6)


def test_softmax_before_opset_13_is_not_one_softmax_per_pixel() -> None:
    """The classic silent wrong answer: Softmax-11 at axis 1 of (N, C, H, W) normalises over C·H·W values per
    sample, so each sample's outputs sum to 1, where opset 13's sums to 1 at each pixel."""
    old = NumpyOnnxBackend.prepare(_model([node("Softmax", ["x"], ["y"], axis=1)], X4.shape, 11)).run([X4])[0]
    new = NumpyOnnxBackend.prepare(_model([node("Softmax", ["x"], ["y"], axis=1)], X4.shape, 13)).run([X4])[0]
    np.testing.assert_allclose(old.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(new.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("model, says", [
    (_model([node("Dropout", ["x"], ["y"], ratio=0.3)], X4.shape, 6), "training mode"),  # is_test defaults to 0
    (_model([node("Upsample", ["x", "s"], ["y"], mode="nearest")], X4.shape, 9,
            (("s", np.float32([1, 1, 0.5, 0.5])),)), "below 1"),
    (_model([node("Upsample", ["x", "s"], ["y"], mode="nearest")], X4.shape, 9,
            (("s", np.float32([1, 2, 2, 2])),)), "batch or channel"),
    (_model([node("Resize", ["x", "roi", "s"], ["y"], mode="linear",
                  coordinate_transformation_mode="tf_crop_and_resize")], X4.shape, 11,
            (("roi", np.float32([0, 0, 0, 0, 1, 1, 1, 1])), ("s", np.float32([1, 1, 2, 2])))), "tf_crop_and_resize"),
], ids=["dropout-6-training", "upsample-shrinks", "upsample-channels", "crop-and-resize"])
def test_forms_not_computed_are_refused_by_name(model: Any, says: str) -> None:
    with pytest.raises(OnnxRunError, match=says):
        NumpyOnnxBackend.prepare(model).run([X4])


def test_control_flow_is_refused_saying_so() -> None:
    body = helper.make_graph(
        [node("Add", ["s_in", "x"], ["s_out"]), node("Identity", ["cond_in"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [2])])
    model = _model([node("Loop", ["n", "", "x"], ["y"], body=body)], (2,), 11, (("n", np.array(3)),))
    with pytest.raises(OnnxRunError, match=r"^Loop: .*control flow .*steps no Loop or Scan"):
        NumpyOnnxBackend.prepare(model).run([np.ones(2, np.float32)])


# -- a network exported by the TorchScript exporter at old opsets, stepped against autograd -----------------------
def _old_ops_net() -> Any:
    """Layers whose TorchScript export before opset 11 takes the old forms: nearest upsampling (Upsample-9,
    Resize-10), clamp (Clip-6), a valued pad (Pad-2), softmax over channels (transposed to the last axis, as the
    exporter does for Softmax-1), sums over an axis (ReduceSum-1), split sizes (Split-2), LRN and InstanceNorm,
    with a linear head; float64, weights nudged off their initial values."""
    import torch

    F = torch.nn.functional

    class OldOpsNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.lrn = torch.nn.LocalResponseNorm(3, alpha=0.1, k=1.5)
            self.norm = torch.nn.InstanceNorm2d(4, affine=True)
            self.fc = torch.nn.Linear(24, 10)

        def forward(self, x: Any) -> Any:
            a = self.norm(self.lrn(F.relu(self.conv(x))))
            a = F.max_pool2d(F.interpolate(a, scale_factor=2.0, mode="nearest"), 2)
            b = torch.clamp(torch.softmax(a, dim=1) * a + F.log_softmax(a, dim=2), -1.0, 1.5)
            c = F.pad(b, (1, 2, 0, 1), value=0.25)[:, :, 1:-1, 1:-2]
            d = c.sum(dim=2)
            first, second = d.split([3, 1], dim=1)
            return self.fc(torch.cat([first, second.mean(dim=1, keepdim=True)], dim=1).flatten(1))

    torch.manual_seed(0)
    return zoo._jitter(OldOpsNet()).double().eval()


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("opset", [9, 10])
def test_torchscript_export_at_an_old_opset_steps_with_autograds_gradients(opset: int, tmp_path: Path) -> None:
    from propscope.debugger import open_session

    model = _old_ops_net()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    y = np.array([1, 7])
    path = zoo.export_onnx(model, (x,), tmp_path / f"old{opset}.onnx", False, opset_version=opset)
    exported = onnx.load(str(path))
    ops = {n.op_type for n in exported.graph.node}
    assert {"Upsample" if opset == 9 else "Resize", "Clip", "Pad", "ReduceSum", "Split", "Softmax"} <= ops, ops
    assert exported.opset_import[0].version == opset
    image = exported.graph.input[0].name
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={image: x, "y": y}, loss="cross_entropy")
        s.run_to_end()
        assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
        assert zoo.relative(s.backend.to_numpy(s.grad(image)), input_grad) <= 1e-10
        names = {n.name for n in s.graph.leaves}
        checked = [p for p in grads if p in names]
        assert {"conv.weight", "fc.weight", "norm.weight"} <= set(checked), sorted(names)
        for p in checked:
            assert zoo.relative(s.backend.to_numpy(s.grad(p)), grads[p]) <= 1e-10, f"{backend}: {p}"
