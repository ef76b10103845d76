"""The upsampling layers of decoders read from files. 3-D transposed convolutions: a 3-D decoder built from torch.nn
(ConvTranspose3d with a U-Net's stride 2, output_padding, groups, dilation, no bias) exported by torch.export as is
(`aten.conv_transpose3d`) and after `run_decompositions()` (`aten.convolution` with transposed=True), and by both
ONNX exporters; the same for a decoder that upsamples volumes by interpolation (trilinear, nearest); an ONNX
ConvTranspose with six-sided pads, output_shape and auto_pad built by hand; and a file whose ConvTranspose
weight does not fit its input, refused in one sentence. And the 1-D ConvTranspose1d of vocoders and audio
decoders in a .pt2 (a 2-D one over an image one row high). Every graph is stepped on the NumPy and the torch
backend and compared with torch autograd in float64.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo
from opcheck import chained_vjps

from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
nn = torch.nn
pytestmark = pytest.mark.torch


class Decoder3d(nn.Module):
    """Per-voxel logits from a small volume, upsampled by the transposed convolutions 3-D U-Nets and V-Nets use."""

    def __init__(self) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose3d(2, 4, 2, stride=2)  # the U-Net's ×2
        self.up2 = nn.ConvTranspose3d(4, 4, 3, stride=(1, 2, 2), padding=1, output_padding=(0, 1, 1), groups=2)
        self.up3 = nn.ConvTranspose3d(4, 3, (2, 3, 3), padding=(0, 2, 1), dilation=(1, 2, 1), bias=False)

    def forward(self, x: Any) -> Any:
        h = torch.relu(self.up1(x))
        h = torch.tanh(self.up2(h))
        return self.up3(h).permute(0, 2, 3, 4, 1).reshape(-1, 3)


def _model() -> tuple[Any, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    model = zoo._jitter(Decoder3d()).double().eval()
    x = np.random.default_rng(0).standard_normal((2, 2, 2, 2, 3))
    with torch.no_grad():
        rows = model(torch.from_numpy(x)).shape[0]
    return model, x, np.random.default_rng(1).integers(0, 3, rows)


def _export_pt2(model: Any, x: np.ndarray, path: Path, decompose: bool) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (torch.from_numpy(x),))
        if decompose:
            program = program.run_decompositions()
        torch.export.save(program, str(path))
    return path


def _export_onnx(model: Any, x: np.ndarray, path: Path, dynamo: bool) -> Path:
    pytest.importorskip("onnx")
    if dynamo:
        pytest.importorskip("onnxscript")
    zoo.export_onnx(model, (x,), path, dynamo)
    return path


def _relative(got: Any, want: np.ndarray) -> float:
    return zoo.relative(got, want)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("form", ["pt2-as-is", "pt2-decomposed", "onnx-dynamo", "onnx-torchscript"])
def test_decoder_steps_with_autograds_numbers(form: str, backend: str, tmp_path: Path) -> None:
    model, x, y = _model()
    path = (_export_pt2(model, x, tmp_path / "d.pt2", form.endswith("decomposed")) if form.startswith("pt2")
            else _export_onnx(model, x, tmp_path / "d.onnx", form.endswith("dynamo")))
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    assert sum(n.op.name == "conv_transpose3d" for n in graph) == 3, "each ConvTranspose3d is one catalog op"
    s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x, "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    assert s.at_end
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert _relative(s.backend.to_numpy(s.grad(graph.inputs[0].name)), input_grad) <= 1e-10
    if form.startswith("pt2"):  # the ONNX exporters rename weights; the .pt2 keeps the state_dict's names
        for name, grad in grads.items():
            assert _relative(s.backend.to_numpy(s.grad(name)), grad) <= 1e-10, name


# -- ONNX ConvTranspose written by hand: the attributes torch's exporters never write ------------------------------
def _convtranspose_file(path: Path, x_shape: tuple[int, ...], w: np.ndarray, **attrs: Any) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], **attrs)
    graph = helper.make_graph([node], "convtranspose3d", [helper.make_tensor_value_info("x", TensorProto.DOUBLE,
                                                                                         list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
                              [numpy_helper.from_array(w, "W")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _crop(full: Any, pads: list[int]) -> Any:
    """ONNX pads (begin d, h, w, end d, h, w) taken off torch's uncropped output."""
    return full[:, :, pads[0]: full.shape[2] - pads[3], pads[1]: full.shape[3] - pads[4],
                pads[2]: full.shape[4] - pads[5]]


@pytest.mark.parametrize("attrs, reference", [
    ({"strides": [2, 1, 2], "pads": [1, 0, 0, 0, 2, 1], "group": 2},
     lambda F, x, w: _crop(F.conv_transpose3d(x, w, stride=(2, 1, 2), groups=2), [1, 0, 0, 0, 2, 1])),
    # the full output is 7×6×11: output_shape takes 2, 0 and 3 cells off, the odd one before (auto_pad NOTSET)
    ({"strides": [2, 2, 2], "output_shape": [5, 6, 8], "dilations": [1, 1, 2]},
     lambda F, x, w: _crop(F.conv_transpose3d(x, w, stride=2, dilation=(1, 1, 2)), [1, 0, 2, 1, 0, 1])),
    ({"strides": [1, 2, 2], "auto_pad": "SAME_UPPER"},
     lambda F, x, w: _crop(F.conv_transpose3d(x, w, stride=(1, 2, 2)), [1, 0, 0, 1, 0, 1])),  # 5×6×9 → 3×6×8
], ids=["six-sided-pads-groups", "output-shape-dilation", "same-upper"])
def test_onnx_convtranspose_3d_attributes(attrs: dict[str, Any], reference: Any, tmp_path: Path) -> None:
    import torch.nn.functional as F

    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 4, 3, 3, 4)), rng.standard_normal((4, 2, 3, 2, 3))
    path = _convtranspose_file(tmp_path / "ct.onnx", x.shape, w, **attrs)
    xt, wt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(w).requires_grad_(True)
    want = reference(F, xt, wt)
    upstream = rng.standard_normal(tuple(want.shape))
    (want * torch.from_numpy(upstream)).sum().backward()
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={"x": x}, loss="none")
        s.run_to_end()
        node = s.prediction_node
        assert node.op.name == "conv_transpose3d"
        np.testing.assert_allclose(s.backend.to_numpy(s.value(node.name)), want.detach().numpy(), rtol=1e-12,
                                   atol=1e-12)
        grads = chained_vjps(s, upstream)
        np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads["W"], wt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, attrs, says", [
    ((1, 3, 2, 2, 2), (2, 2, 2, 2, 2), {}, "expects 2 input channels"),
    ((1, 2, 2, 2, 2), (2, 2, 2, 2, 2), {"strides": [2, 2, 2], "output_padding": [0, 3, 0]}, "output_padding"),
    ((1, 2, 1, 1, 1), (2, 2, 1, 1, 1), {"pads": [1, 1, 1, 1, 1, 1]}, "crops the whole|impossible shape"),
    ((1, 2, 2, 2, 2), (2, 2, 2, 2, 2), {"strides": [10**5] * 3}, "more than propscope will load"),
    ((1, 2, 2, 2), (2, 2, 2, 2), {"strides": [10**6] * 2}, "more than propscope will load"),
    ((1, 2, 3), (2, 2, 2), {"strides": [10**10]}, "more than propscope will load"),
])
def test_onnx_convtranspose_3d_that_does_not_fit_is_refused_in_one_sentence(
        x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any], says: str, tmp_path: Path) -> None:
    path = _convtranspose_file(tmp_path / "bad.onnx", x_shape, np.ones(w_shape), **attrs)
    with pytest.raises(ModelFormatError) as info:
        model = open_model(path)
        if any(n.op.name == "unsupported" for n in model.graph):  # a placeholder that says why is fine too
            raise ModelFormatError("; ".join(model.warnings))
    message = str(info.value)
    assert re.search(says, message) and "\n" not in message and "Traceback" not in message, message


class Decoder1d(nn.Module):
    """An audio decoder's upsampling (HiFi-GAN's ConvTranspose1d: stride, padding; grouped and dilated too)."""

    def __init__(self) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose1d(4, 4, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose1d(4, 6, 3, stride=3, padding=1, output_padding=2, groups=2, dilation=2)

    def forward(self, x: Any) -> Any:
        return self.up2(torch.nn.functional.leaky_relu(self.up1(x), 0.1)).permute(0, 2, 1).reshape(-1, 6)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("decompose", [False, True], ids=["as_is", "decomposed"])
def test_conv_transpose1d_in_a_pt2_steps_with_autograds_numbers(decompose: bool, backend: str,
                                                                tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo._jitter(Decoder1d()).double().eval()
    x = np.random.default_rng(2).standard_normal((2, 4, 5))
    with torch.no_grad():
        y = np.random.default_rng(3).integers(0, 6, model(torch.from_numpy(x)).shape[0])
    path = _export_pt2(model, x, tmp_path / "d1.pt2", decompose)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    assert sum(n.op.name == "conv_transpose2d" for n in graph) == 2
    s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x, "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert _relative(s.backend.to_numpy(s.grad(graph.inputs[0].name)), input_grad) <= 1e-10
    for name, grad in grads.items():
        assert _relative(s.backend.to_numpy(s.grad(name)), grad) <= 1e-10, name


class Interpolated3d(nn.Module):
    """A 3-D decoder that upsamples by interpolation (nn.Upsample in 3-D U-Nets): trilinear ×2, nearest by (1, 2, 2),
    trilinear with align_corners to a size that shrinks one axis."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 3, 3, padding=1)

    def forward(self, x: Any) -> Any:
        a = torch.nn.functional.interpolate(x, scale_factor=2, mode="trilinear")
        b = torch.nn.functional.interpolate(self.conv(a), scale_factor=(1, 2, 2), mode="nearest")
        c = torch.nn.functional.interpolate(b, size=(3, 5, 7), mode="trilinear", align_corners=True)
        return c.permute(0, 2, 3, 4, 1).reshape(-1, 3)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("form", ["pt2-as-is", "pt2-decomposed", "onnx-dynamo", "onnx-torchscript"])
def test_interpolating_decoder_steps_with_autograds_numbers(form: str, backend: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo._jitter(Interpolated3d()).double().eval()
    x = np.random.default_rng(0).standard_normal((2, 2, 2, 3, 3))
    with torch.no_grad():
        y = np.random.default_rng(1).integers(0, 3, model(torch.from_numpy(x)).shape[0])
    path = (_export_pt2(model, x, tmp_path / "i.pt2", form.endswith("decomposed")) if form.startswith("pt2")
            else _export_onnx(model, x, tmp_path / "i.onnx", form.endswith("dynamo")))
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    if form != "pt2-decomposed":  # decomposed, the interpolations are gathers and blends of catalog ops
        assert sorted(n.op.name for n in graph if n.op.name.startswith("upsample")) == \
            ["upsample_nearest3d", "upsample_trilinear3d", "upsample_trilinear3d"]
    s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x, "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert _relative(s.backend.to_numpy(s.grad(graph.inputs[0].name)), input_grad) <= 1e-10
    if form.startswith("pt2"):
        for name, grad in grads.items():
            assert _relative(s.backend.to_numpy(s.grad(name)), grad) <= 1e-10, name


class PaddedVolumes(nn.Module):
    """Conv3d with padding_mode reflect, replicate and circular (aten.pad as is, gathers once decomposed), and the
    Core ATen 3-D padding ops called directly, as a program lowered by hand or by another tool holds them."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(2, 3, 3, padding=1, padding_mode="reflect")
        self.b = nn.Conv3d(3, 3, 3, padding=(1, 2, 1), padding_mode="replicate")
        self.c = nn.Conv3d(3, 3, 3, padding=1, padding_mode="circular")

    def forward(self, x: Any) -> Any:
        h = self.c(self.b(self.a(x)))
        h = torch.ops.aten.reflection_pad3d(h, [1, 0, 0, 1, 1, 1])
        h = torch.ops.aten.replication_pad3d(h, [0, 2, 1, 0, 0, 1])
        return h.permute(0, 2, 3, 4, 1).reshape(-1, 3)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("decompose", [False, True], ids=["as_is", "decomposed"])
def test_padding_modes_of_volumes_step_with_autograds_numbers(decompose: bool, backend: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo._jitter(PaddedVolumes()).double().eval()
    x = np.random.default_rng(2).standard_normal((2, 2, 3, 4, 5))
    with torch.no_grad():
        y = np.random.default_rng(3).integers(0, 3, model(torch.from_numpy(x)).shape[0])
    path = _export_pt2(model, x, tmp_path / "p.pt2", decompose)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    if not decompose:
        assert {n.attrs["mode"] for n in graph if n.op.name == "pad"} == {"reflect", "replicate", "circular"}
    s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x, "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert _relative(s.backend.to_numpy(s.grad(graph.inputs[0].name)), input_grad) <= 1e-10
    for name, grad in grads.items():
        assert _relative(s.backend.to_numpy(s.grad(name)), grad) <= 1e-10, name


class SamePadding(nn.Module):
    """padding='same' with even effective kernels, which pad one more cell after than before (PyTorch's rule)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(2, 2, 4, padding="same")
        self.c2 = nn.Conv2d(2, 2, (2, 3), padding="same", dilation=(3, 1))
        self.c3 = nn.Conv3d(2, 3, (2, 3, 4), padding="same")

    def forward(self, x: Any) -> Any:
        n, c, d, h, w = x.shape
        seq = self.c1(x.reshape(n, c, -1)).reshape(n, c, d * h, w)
        return self.c3(self.c2(seq).reshape(n, c, d, h, w)).permute(0, 2, 3, 4, 1).reshape(-1, 3)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("decompose", [False, True], ids=["as_is", "decomposed"])
def test_same_padding_with_even_kernels_steps_with_autograds_numbers(decompose: bool, backend: str,
                                                                     tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo._jitter(SamePadding()).double().eval()
    x = np.random.default_rng(4).standard_normal((2, 2, 3, 4, 5))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch says an even 'same' kernel pads a copy of the input: it does here
        y = np.random.default_rng(5).integers(0, 3, model(torch.from_numpy(x)).shape[0])
    path = _export_pt2(model, x, tmp_path / "same.pt2", decompose)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x, "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert _relative(s.backend.to_numpy(s.grad(graph.inputs[0].name)), input_grad) <= 1e-10
    for name, grad in grads.items():
        assert _relative(s.backend.to_numpy(s.grad(name)), grad) <= 1e-10, name
