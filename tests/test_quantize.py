"""The quantize family: fake_quantize, quantize, dequantize and choose_qparams, and the quantized files engineers
bring (QDQ and QOperator ONNX from onnxruntime's quantize_static, quantize_dynamic's integer products, QAT programs
from torch.export).

The op table runs the shared op checks (`opcheck`): NumPy against torch's own fake-quant functions under autograd
(float64), propscope's torch backend against its NumPy backend (float32 and float64), and central differences in
float64 where the derivative is a true one (dequantize). Rounding has no useful derivative, so the straight-through
estimator is checked for what it is: central differences of the same function with round taken as the identity.
Files are checked against onnxruntime and ONNX's reference evaluator, QAT programs against autograd.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo
from opcheck import Case, check_against_torch, check_backends_agree, check_gradient, fixed, normal, one_op

from propscope.backends.numpy import NumpyBackend
from propscope.debugger import open_session
from propscope.debugger.gradcheck import numeric_gradient
from propscope.graph.readers import open_model


# -- the op table ---------------------------------------------------------------------------------------------
def _grid_values(*shape: int, scale: float = 0.05, zero: int = 3, lo: int = -128, hi: int = 127) -> Any:
    """x/s + zp = k + u, k an integer from below lo to above hi (so some values clamp) but never lo or hi
    themselves, u in [−0.4, 0.4]: rounding is never a tie, and round(x/s) + zp and x/s + zp lie on the same side of
    each bound (where the straight-through estimator equals the derivative with round taken as the identity)."""
    def make(rng: np.random.Generator) -> np.ndarray:
        k = rng.integers(lo - 6, hi + 7, shape)
        k = np.where((k == lo) | (k == hi), k + 2, k)
        return (k + rng.uniform(-0.4, 0.4, shape) - zero) * scale
    return make


def _per_channel(values: list[float], ndim: int = 4, dtype: Any = np.float32) -> Any:
    return fixed(np.asarray(values, dtype=dtype).reshape(-1, *(1,) * (ndim - 2)))


TORCH_PER_TENSOR = {"qmin": -128, "qmax": 127, "inverse": True, "float32_output": True}
TORCH_PER_CHANNEL = {"qmin": -128, "qmax": 127, "inverse": True, "float32_output": False}
ONNX_UINT8 = {"qmin": 0, "qmax": 255, "inverse": False, "float32_output": True}
SCALES = [0.05, 0.021, 0.0133, 0.08]


def _torch_per_tensor(F: Any, t: Any, x: Any, s: Any, z: Any) -> Any:
    return t.fake_quantize_per_tensor_affine(x, s.float().reshape(1), z.int().reshape(1), -128, 127)


def _torch_per_channel(F: Any, t: Any, x: Any, s: Any, z: Any) -> Any:
    return t.fake_quantize_per_channel_affine(x, s.float().reshape(-1), z.int().reshape(-1), 1, -128, 127)


def _onnx_grid(qmin: int, qmax: int, read_back: bool) -> Any:
    """ONNX's QuantizeLinear (and DequantizeLinear) written with torch ops: x/s rounded, float32 (q − zp)·s."""
    def fn(F: Any, t: Any, x: Any, s: Any, z: Any) -> Any:
        q = t.clamp(t.round(x / s) + z, qmin, qmax)
        return ((q - z).float() * s.float()).double() if read_back else q
    return fn


CASES = [
    Case("fake_quantize", (_grid_values(2, 3, 4, 5), fixed(0.05), fixed(np.int64(3))), _torch_per_tensor,
         TORCH_PER_TENSOR, "per-tensor"),
    Case("fake_quantize",
         (normal(2, 4, 3, 3, scale=2.0), _per_channel(SCALES), _per_channel([0, 1, -2, 3], 4, np.int64)),
         _torch_per_channel, TORCH_PER_CHANNEL, "per-channel"),
    Case("fake_quantize", (normal(3, 4, scale=4.0), fixed(0.03), fixed(np.uint8(128))), _onnx_grid(0, 255, True),
         ONNX_UINT8, "onnx-uint8", torch_grad=False),
    Case("quantize", (normal(3, 4, scale=4.0), fixed(0.03), fixed(np.uint8(128))), _onnx_grid(0, 255, False),
         ONNX_UINT8, "onnx-uint8", torch_grad=False),
    Case("quantize", (normal(2, 4, 3, scale=2.0), _per_channel(SCALES, 3), _per_channel([0, 1, -2, 3], 3, np.int64)),
         _onnx_grid(-128, 127, False), {**TORCH_PER_CHANNEL, "inverse": False}, "per-channel", torch_grad=False),
    Case("dequantize", (lambda rng: rng.integers(-128, 128, (3, 4)).astype(np.float64), normal(4, scale=0.1),
                        fixed(np.int64(2))),
         lambda F, t, q, s, z: (q - z) * s, {"float32_output": False}, "exact"),
    Case("dequantize", (lambda rng: rng.integers(0, 256, (2, 4, 3)).astype(np.float64), _per_channel(SCALES, 3),
                        _per_channel([0, 1, 2, 3], 3, np.uint8)),
         lambda F, t, q, s, z: ((q - z).float() * s.float()).double(), {"float32_output": True}, "float32",
         torch_grad=False),
    Case("choose_qparams", (normal(3, 5),),
         lambda F, t, x: (t.clamp(x.max(), min=0) - t.clamp(x.min(), max=0)) / 255, {"part": "scale"}, "scale",
         torch_grad=False),
    Case("choose_qparams", (normal(3, 5),),
         lambda F, t, x: t.round(t.clamp(-t.clamp(x.min(), max=0) / ((t.clamp(x.max(), min=0)
                                                                      - t.clamp(x.min(), max=0)) / 255), 0, 255)),
         {"part": "zero_point"}, "zero-point", torch_grad=False),
]
TRUE_DERIVATIVES = [c for c in CASES if c.op in ("dequantize", "choose_qparams") and c.tag != "float32"]


@pytest.mark.parametrize("case", TRUE_DERIVATIVES, ids=lambda c: c.id)
def test_gradient_matches_finite_differences(case: Case) -> None:
    check_gradient(case)


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_torch(case: Case) -> None:
    check_against_torch(case)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_backends_agree(case: Case, dtype: str) -> None:
    check_backends_agree(case, dtype)


def _round_as_identity(op: str, x: np.ndarray, s: np.ndarray, z: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """The op with round taken as the identity: what the straight-through estimator differentiates."""
    level = np.clip(x / s + z, qmin, qmax)
    return level if op == "quantize" else (level - z) * s


@pytest.mark.parametrize("op", ["fake_quantize", "quantize"])
@pytest.mark.parametrize("inverse", [True, False])
def test_straight_through_is_the_derivative_with_round_as_the_identity(op: str, inverse: bool) -> None:
    rng = np.random.default_rng(0)
    s, z = np.asarray(0.05), np.asarray(3)
    x = _grid_values(4, 30)(rng)
    attrs = {"qmin": -128, "qmax": 127, "inverse": inverse, "float32_output": False}
    node = one_op(op, [x, s, z], attrs)
    backend = NumpyBackend("float64")
    upstream = rng.standard_normal(x.shape)
    out = backend.forward(node, [x, s, z])
    grads = backend.vjp(node, [x, s, z], out, upstream)
    assert grads[1] is None and grads[2] is None  # the grid is data
    numeric = numeric_gradient(lambda: np.sum(_round_as_identity(op, x, s, z, -128, 127) * upstream), x)
    np.testing.assert_allclose(grads[0], numeric, rtol=1e-7, atol=1e-9)
    clamped = (np.rint(x / s) + z < -128) | (np.rint(x / s) + z > 127)
    assert clamped.any() and (~clamped).any() and not np.any(grads[0][clamped])


def test_dequantize_of_quantize_has_fake_quantizes_gradient() -> None:
    rng = np.random.default_rng(1)
    x, s, z = rng.standard_normal((3, 7)) * 4, np.asarray(0.03), np.asarray(128)
    attrs = {"qmin": 0, "qmax": 255, "inverse": False, "float32_output": True}
    backend = NumpyBackend("float64")
    q_node, fq_node = one_op("quantize", [x, s, z], attrs), one_op("fake_quantize", [x, s, z], attrs)
    dq_node = one_op("dequantize", [x, s, z], {"float32_output": True})
    q = backend.forward(q_node, [x, s, z])
    y = backend.forward(dq_node, [q, s, z])
    np.testing.assert_array_equal(y, backend.forward(fq_node, [x, s, z]))
    g = rng.standard_normal(x.shape)
    through_q = backend.vjp(q_node, [x, s, z], q, backend.vjp(dq_node, [q, s, z], y, g)[0])[0]
    np.testing.assert_allclose(through_q, backend.vjp(fq_node, [x, s, z], y, g)[0], rtol=1e-15)


# -- ONNX QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear against ONNX's reference and onnxruntime -----
def _onnx_model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any], opset: int = 19) -> Any:
    from onnx import helper

    graph = helper.make_graph(nodes, "q", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _qdq_models() -> dict[str, tuple[Any, dict[str, np.ndarray]]]:
    """Small models of each form, with their float input."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 4, 3, 3)) * 3).astype(np.float32)
    f32 = TensorProto.FLOAT

    def tensor(name: str, shape: tuple[int, ...], elem: int = f32) -> Any:
        return helper.make_tensor_value_info(name, elem, shape)

    def init(name: str, value: Any) -> Any:
        return numpy_helper.from_array(np.asarray(value), name)

    scales = np.asarray([0.05, 0.021, 0.0133, 0.08], dtype=np.float32)
    weights = rng.integers(-127, 128, (4, 3, 3)).astype(np.int8)
    models = {
        "pair-uint8": _onnx_model(
            [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
            [tensor("x", x.shape)], [tensor("y", x.shape)],
            [init("s", np.float32(0.04)), init("z", np.uint8(120))]),
        "pair-int8-per-axis": _onnx_model(
            [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)],
            [tensor("x", x.shape)], [tensor("y", x.shape)],
            [init("s", scales), init("z", np.asarray([0, 3, -5, 1], dtype=np.int8))]),
        "quantize-int16": _onnx_model(
            [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])],
            [tensor("x", x.shape)], [tensor("y", x.shape, TensorProto.INT16)],
            [init("s", np.float32(0.0007)), init("z", np.int16(-100))], opset=21),  # onnxruntime: int16 from 21
        "quantize-uint8-no-zero-point": _onnx_model(
            [helper.make_node("QuantizeLinear", ["x", "s"], ["y"])],
            [tensor("x", x.shape)], [tensor("y", x.shape, TensorProto.UINT8)], [init("s", np.float32(0.02))]),
        "weights-per-axis": _onnx_model(
            [helper.make_node("DequantizeLinear", ["w_quantized", "ws", "wz"], ["w"], axis=0),
             helper.make_node("Mul", ["x", "w"], ["y"])],
            [tensor("x", x.shape)], [tensor("y", x.shape)],
            [init("w_quantized", weights), init("ws", scales), init("wz", np.asarray([0, 1, 0, -1], dtype=np.int8))]),
        "dynamic": _onnx_model(
            [helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "ys", "yz"])],
            [tensor("x", x.shape)],
            [tensor("y", x.shape, TensorProto.UINT8), tensor("ys", ()), tensor("yz", (), TensorProto.UINT8)], []),
    }
    return {name: (model, {"x": x}) for name, model in models.items()}


@pytest.mark.torch
@pytest.mark.parametrize("name", ["pair-uint8", "pair-int8-per-axis", "quantize-int16", "quantize-uint8-no-zero-point",
                                  "weights-per-axis", "dynamic"])
def test_forward_equals_onnx_reference_and_onnxruntime(name: str) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx.reference import ReferenceEvaluator

    from propscope.debugger.onnx_backend import NumpyOnnxBackend, TorchOnnxBackend

    model, feed = _qdq_models()[name]
    onnx.checker.check_model(model)
    reference = ReferenceEvaluator(model).run(None, feed)
    runtime = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    for backend in (NumpyOnnxBackend, TorchOnnxBackend):
        got = backend.prepare(model).run(feed)
        for mine, ref, rt in zip(got, reference, runtime, strict=True):
            assert mine.dtype == ref.dtype and mine.shape == ref.shape
            np.testing.assert_array_equal(mine, ref, err_msg=f"{name} vs ONNX's reference ({backend.kind})")
            np.testing.assert_array_equal(mine, rt, err_msg=f"{name} vs onnxruntime ({backend.kind})")


def test_a_pair_is_one_fake_quantize_and_integer_weights_a_named_parameter(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    import onnx

    for name, want in (("pair-int8-per-axis", ["fake_quantize"]), ("weights-per-axis", ["mul"]),
                       ("quantize-int16", ["quantize"])):
        path = tmp_path / f"{name}.onnx"
        onnx.save(_qdq_models()[name][0], str(path))
        graph = open_model(path).graph
        assert [n.op.name for n in graph.ops] == want, name
    params = {p.name: p for p in graph.parameters}
    assert not params  # quantize-int16: no float initializer; its scale is a constant
    graph = open_model(tmp_path / "weights-per-axis.onnx").graph
    (w,) = graph.parameters
    assert w.name == "w_quantized" and w.shape == (4, 3, 3)
    fq = open_model(tmp_path / "pair-int8-per-axis.onnx").graph.ops[0]
    assert fq.inputs[1].op.name == "constant" and fq.inputs[1].shape == (4, 1, 1)  # the scale, along axis 1


@pytest.mark.parametrize("case", ["blocked", "zero-points", "scales"])
def test_grids_propscope_does_not_read_are_refused_in_one_line(case: str, tmp_path: Path) -> None:
    """Blocked scales by name; a zero point or a number of scales that fits no axis, as what it is (the rest of the
    graph still opens)."""
    pytest.importorskip("onnx")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scales, zeros, attrs = {"blocked": ((2, 2), (2, 2), {"block_size": 2}), "zero-points": ((4,), (3,), {}),
                            "scales": ((3,), (3,), {})}[case]
    model = _onnx_model(
        [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=1, **attrs),
         helper.make_node("Mul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 4))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 4))],
        [numpy_helper.from_array(np.ones((2, 4), dtype=np.int8), "wq"),
         numpy_helper.from_array(np.ones(scales, dtype=np.float32), "ws"),
         numpy_helper.from_array(np.zeros(zeros, dtype=np.int8), "wz")], opset=21)
    onnx.save(model, str(tmp_path / f"{case}.onnx"))
    graph = open_model(tmp_path / f"{case}.onnx").graph
    (bad,) = [n for n in graph if n.op.name == "unsupported"]
    want = {"blocked": "blocked quantization (block_size=2", "zero-points": "a zero point of shape (3,) for scales",
            "scales": "3 scales for 4 channels along axis 1"}[case]
    assert bad.meta["original_op"] == "DequantizeLinear" and want in bad.meta["reason"]
    assert "\n" not in bad.meta["reason"]


# -- quantized files end to end ---------------------------------------------------------------------------------
def _small_cnn() -> Any:
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.fc = nn.Linear(16 * 8 * 8, 10)

        def forward(self, x: Any) -> Any:
            x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
            return self.fc(torch.relu(self.conv2(x)).flatten(1))

    torch.manual_seed(0)
    return SmallCNN().eval()


def _batch(seed: int, shape: tuple[int, ...] = (2, 3, 32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _quantized(model: Any, folder: Path, name: str, form: str, shape: tuple[int, ...] = (2, 3, 32, 32),
               **options: Any) -> Path:
    """`model` exported to ONNX (TorchScript exporter, input `x`) and quantized by onnxruntime: `form` is
    QDQ or QOperator (quantize_static on two calibration batches) or dynamic (quantize_dynamic)."""
    pytest.importorskip("onnx")
    quantization = pytest.importorskip("onnxruntime.quantization")
    source, target = folder / f"{name}.onnx", folder / f"{name}.{form}.onnx"
    if not source.exists():
        zoo.export_onnx(model, (_batch(0, shape),), source, dynamo=False, input_names=["x"], opset_version=17)

    class Calibration(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": _batch(seed, shape)} for seed in (1, 2)])

        def get_next(self) -> Any:
            return next(self.batches, None)

    logging.disable(logging.WARNING)  # onnxruntime's advice to pre-process the model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if form == "dynamic":
                quantization.quantize_dynamic(str(source), str(target), **options)
            else:
                quantization.quantize_static(str(source), str(target), Calibration(),
                                             quant_format=getattr(quantization.QuantFormat, form), **options)
    finally:
        logging.disable(logging.NOTSET)
    return target


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the file's ops as written
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _unsupported(path: Path) -> list[str]:
    return sorted(f"{n.meta.get('original_op')}: {n.meta.get('reason')}" for n in open_model(path).graph
                  if n.op.name == "unsupported")


def _steps_on_both_backends(path: Path, x: np.ndarray, dtypes: tuple[str, ...] = ("float64",)) -> dict[str, Any]:
    """Each backend's session, run to the end of the backward pass with cross-entropy on labels 1, 2, ..."""
    y = np.arange(1, x.shape[0] + 1)
    sessions = {}
    for dtype in dtypes:
        for backend in ("numpy", "torch"):
            s = open_session(path, backend=backend, dtype=dtype, data={"x": x, "y": y}, loss="cross_entropy")
            s.run_to_end()
            assert s.at_end
            sessions[f"{backend}-{dtype}"] = s
    return sessions


def _agree(a: Any, b: Any, tol: float) -> None:
    """Every parameter's and the input's gradient, and the prediction, the same on two sessions."""
    names = [p.name for p in a.graph.parameters] + ["x"]
    for name in names:
        ga, gb = a.backend.to_numpy(a.grad(name)), b.backend.to_numpy(b.grad(name))
        assert zoo.relative(ga, gb) <= tol, f"∂L/∂{name} differs between backends"
    pa = a.backend.to_numpy(a.value(a.prediction_node.name))
    assert zoo.relative(pa, b.backend.to_numpy(b.value(b.prediction_node.name))) <= tol


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quantized")


@pytest.mark.torch
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_small_cnn_qdq_opens_matches_onnxruntime_and_steps(per_channel: bool, folder: Path) -> None:
    path = _quantized(_small_cnn(), folder, "cnn", "QDQ", per_channel=per_channel)
    assert not _unsupported(path)
    graph = open_model(path).graph
    ops = [n.op.name for n in graph.ops]
    assert ops.count("fake_quantize") == 6 and "quantize" not in ops and "dequantize" not in ops
    assert {p.name for p in graph.parameters} == {f"{m}.{k}_quantized" for m in ("conv1", "conv2", "fc")
                                                  for k in ("weight", "bias")}
    x = _batch(5)
    sessions = _steps_on_both_backends(path, x, ("float32", "float64"))
    want = _onnxruntime(path, x)
    for key, s in sessions.items():
        got = s.backend.to_numpy(s.value(s.prediction_node.name))
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=key)
    _agree(sessions["numpy-float64"], sessions["torch-float64"], 1e-12)
    _agree(sessions["numpy-float32"], sessions["torch-float32"], 1e-5)
    grad = sessions["numpy-float64"].grad("conv1.weight_quantized")
    assert np.linalg.norm(grad) > 0  # ∂L/∂W of the integer weights, as floats


@pytest.mark.torch
@pytest.mark.slow
def test_resnet18_qdq_opens_matches_onnxruntime_and_steps(folder: Path) -> None:
    models = zoo.torchvision_models()
    if models is None:
        pytest.skip("torchvision is not installed")
    import torch

    torch.manual_seed(0)
    path = _quantized(models.resnet18(num_classes=10).eval(), folder, "resnet18", "QDQ", per_channel=True)
    assert not _unsupported(path)
    x = _batch(5)
    sessions = _steps_on_both_backends(path, x)
    want = _onnxruntime(path, x)
    # float64: the output equals onnxruntime's (its grid absorbs float32's rounding); in float32 a convolution
    # summed in another order than onnxruntime's moves the odd value that sits on a rounding boundary one step
    for key, s in sessions.items():
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want, atol=1e-5, rtol=0,
                                   err_msg=key)
    _agree(sessions["numpy-float64"], sessions["torch-float64"], 1e-9)


@pytest.mark.torch
def test_qoperator_cnn_is_dequantize_op_quantize(folder: Path) -> None:
    path = _quantized(_small_cnn(), folder, "cnn", "QOperator")
    assert not _unsupported(path)
    ops = [n.op.name for n in open_model(path).graph.ops]
    assert "quantize" in ops and "dequantize" in ops and "fake_quantize" in ops  # QLinearConv, MaxPool, QGemm
    x = _batch(5)
    sessions = _steps_on_both_backends(path, x)
    for s in sessions.values():
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), _onnxruntime(path, x),
                                   atol=1e-5, rtol=0)
    _agree(sessions["numpy-float64"], sessions["torch-float64"], 1e-12)


@pytest.mark.torch
def test_dynamic_quantization_of_a_cnn_matches_onnxruntime(folder: Path) -> None:
    path = _quantized(_small_cnn(), folder, "cnn", "dynamic")
    assert not _unsupported(path)
    ops = {n.meta.get("original_op") for n in open_model(path).graph}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    x = _batch(5)
    sessions = _steps_on_both_backends(path, x, ("float32",))
    for s in sessions.values():
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), _onnxruntime(path, x),
                                   atol=1e-5, rtol=0)
    _agree(sessions["numpy-float32"], sessions["torch-float32"], 1e-5)


@pytest.mark.torch
def test_dynamic_quantization_of_an_lstm_refuses_its_lstm_by_name(folder: Path) -> None:
    import torch
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm, self.fc = nn.LSTM(4, 8, batch_first=True), nn.Linear(8, 3)

        def forward(self, x: Any) -> Any:
            return self.fc(self.lstm(x)[0][:, -1])

    torch.manual_seed(0)
    path = _quantized(Tagger().eval(), folder, "tagger", "dynamic", shape=(2, 5, 4))
    reasons = {r.split(":")[0]: r for r in _unsupported(path)}
    assert set(reasons) == {"com.microsoft.DynamicQuantizeLSTM"}
    assert "op_types_to_quantize" in reasons["com.microsoft.DynamicQuantizeLSTM"]


# -- quantization-aware training, exported with torch.export ---------------------------------------------------
def _qat_net() -> Any:
    """A QAT-style network written with torch's fake-quant functions: the input on a uint8 grid (scalar scale and
    zero point), the convolution's weights per channel (int8, buffers), its activations per tensor (buffers)."""
    import torch
    from torch import nn

    class QATNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 6 * 6, 5)
            self.register_buffer("act_scale", torch.tensor([0.07], dtype=torch.float64))
            self.register_buffer("act_zero", torch.tensor([2], dtype=torch.int32))
            self.register_buffer("w_scale", torch.rand(4) * 0.01 + 0.004)  # float32: torch's per-channel kernel
            self.register_buffer("w_zero", torch.zeros(4, dtype=torch.int32))

        def forward(self, x: Any) -> Any:
            x = torch.fake_quantize_per_tensor_affine(x, 0.05, 3, 0, 255)
            w = torch.fake_quantize_per_channel_affine(self.conv.weight, self.w_scale, self.w_zero, 0, -127, 127)
            h = torch.relu(torch.nn.functional.conv2d(x, w, self.conv.bias))
            h = torch.fake_quantize_per_tensor_affine(h, self.act_scale, self.act_zero, -128, 127)
            return self.fc(h.flatten(1))

    torch.manual_seed(0)
    net = QATNet()
    net.conv.double()
    net.fc.double()
    return net


def _against_autograd(program: Any, model: Any, x: Any, y: np.ndarray, dtype: str, tol: float) -> None:
    import torch

    m = copy.deepcopy(model)
    xr = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(m(xr), torch.from_numpy(y))
    loss.backward()
    loss = float(loss.detach())
    params = {n: p.grad.numpy() for n, p in m.named_parameters()}
    for backend in ("numpy", "torch"):
        s = open_session(program, backend=backend, dtype=dtype, data={"y": y}, loss="cross_entropy")
        assert not [n for n in s.graph if n.op.name == "unsupported"]
        s.run_to_end()
        got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
        assert abs(got - loss) <= tol * max(1.0, abs(loss)), f"{backend}: loss {got} != {loss}"
        assert zoo.relative(s.grad(s.graph.inputs[0].name), xr.grad.numpy()) <= tol, f"{backend}: ∂L/∂x"
        for name, want in params.items():
            assert zoo.relative(s.grad(name), want) <= tol, f"{backend}: ∂L/∂{name}"


@pytest.mark.torch
@pytest.mark.parametrize("decomposed", [False, True], ids=["as-exported", "decomposed"])
def test_qat_module_with_fake_quantize_matches_autograd(decomposed: bool) -> None:
    import torch

    model = _qat_net()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 8, 8)))
    program = torch.export.export(model, (x,))
    if decomposed:
        program = program.run_decompositions()
    ops = [n.op.name for n in open_session(program, loss="none").graph.ops]
    assert ops.count("fake_quantize") == 3
    _against_autograd(program, model, x, np.array([1, 3]), "float64", 1e-9)


def _eager_qat(observer: bool = False) -> Any:
    """Eager-mode QAT as torch.ao.quantization prepares it (x86 qconfig: fused observer and fake quantization),
    trained on three batches, then evaluated with its observers off (or on)."""
    import torch
    import torch.ao.quantization as tq
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
            self.conv, self.relu, self.fc = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4 * 6 * 6, 5)

        def forward(self, x: Any) -> Any:
            return self.dequant(self.fc(self.relu(self.conv(self.quant(x))).flatten(1)))

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's notice that it moves to torchao
        net = Net().train()
        net.qconfig = tq.get_default_qat_qconfig("x86")
        prepared = tq.prepare_qat(net)
        for seed in range(3):
            prepared(torch.from_numpy(_batch(seed, (2, 3, 8, 8))))
        if not observer:
            prepared.apply(tq.disable_observer)
    return prepared.eval()


@pytest.mark.torch
@pytest.mark.parametrize("decomposed", [False, True], ids=["as-exported", "decomposed"])
def test_eager_qat_with_fused_observers_matches_autograd(decomposed: bool) -> None:
    import torch

    model = _eager_qat()
    x = torch.from_numpy(_batch(7, (2, 3, 8, 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (x,))
        if decomposed:
            program = program.run_decompositions()
    ops = [n.op.name for n in open_session(program, loss="none").graph.ops]
    assert ops.count("fake_quantize") == 5  # input, conv weight (per channel), conv output, fc weight, fc output
    _against_autograd(program, model, x, np.array([1, 3]), "float32", 1e-5)  # torch's fused kernel: float32 only


@pytest.mark.torch
def test_an_observer_that_is_on_is_refused_by_name() -> None:
    import torch

    model = _eager_qat(observer=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (torch.from_numpy(_batch(7, (2, 3, 8, 8))),))
    bad = [n for n in open_session(program, loss="none").graph if n.op.name == "unsupported"]
    assert bad and all("observer that is on" in n.meta["reason"] and "disable_observer" in n.meta["reason"]
                       for n in bad)


@pytest.mark.torch
def test_pt2e_quantize_dequantize_pairs_and_integer_weights() -> None:
    """quantized_decomposed (what PT2E's convert_pt2e writes): a quantize→dequantize pair is one fake_quantize; a
    dequantized int8 weight is a float parameter named after its buffer, with torch's gradient for that weight."""
    import torch
    import torch.ao.quantization.fx._decomposed  # registers the quantized_decomposed ops
    from torch import nn

    class Converted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            generator = torch.Generator().manual_seed(0)
            self.register_buffer("w_int8", torch.randint(-127, 128, (3, 6), dtype=torch.int8, generator=generator))
            self.register_buffer("w_scale", torch.rand(3, generator=generator) * 0.01 + 0.001)
            self.register_buffer("w_zero", torch.zeros(3, dtype=torch.int64))
            self.bias = nn.Parameter(torch.zeros(3))

        def weight(self) -> Any:
            return torch.ops.quantized_decomposed.dequantize_per_channel(self.w_int8, self.w_scale, self.w_zero, 0,
                                                                         -127, 127, torch.int8)

        def forward(self, x: Any) -> Any:
            q = torch.ops.quantized_decomposed.quantize_per_tensor(x, 0.05, 3, 0, 255, torch.uint8)
            x = torch.ops.quantized_decomposed.dequantize_per_tensor(q, 0.05, 3, 0, 255, torch.uint8)
            return torch.nn.functional.linear(x, self.weight(), self.bias)

    model = Converted()
    x = torch.from_numpy(_batch(3, (4, 6)))
    program = torch.export.export(model, (x,))
    graph = open_session(program, loss="none").graph
    assert [n.op.name for n in graph.ops] == ["fake_quantize", "linear"]
    assert {p.name for p in graph.parameters} == {"w_int8", "bias"}
    # the reference: the dequantized weight as a float parameter, the input through torch's fake quantization
    weight = model.weight().detach().clone().requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    y = np.array([0, 1, 2, 1])
    out = torch.nn.functional.linear(torch.fake_quantize_per_tensor_affine(xr, 0.05, 3, 0, 255), weight, model.bias)
    torch.nn.functional.cross_entropy(out, torch.from_numpy(y)).backward()
    for backend in ("numpy", "torch"):
        s = open_session(program, backend=backend, dtype="float32", data={"y": y}, loss="cross_entropy")
        s.run_to_end()
        np.testing.assert_allclose(s.value(s.prediction_node.name), model(x).detach().numpy(), atol=1e-6)
        assert zoo.relative(s.grad("w_int8"), weight.grad.numpy()) <= 1e-6
        assert zoo.relative(s.grad(s.graph.inputs[0].name), xr.grad.numpy()) <= 1e-6
