"""ONNX Resize read onto the catalog's nearest, bilinear and bicubic upsampling, and GridSample onto grid_sample:
files written by both of torch's exporters (F.interpolate by size and by scale, bilinear and bicubic with and without
align_corners, nearest; F.grid_sample) and nodes written by hand (scales or sizes as initializers, `axes`,
pytorch_half_pixel, downsampling; GridSample's modes and paddings under both opsets' names; AffineGrid), stepped on
the NumPy and the torch backend and compared with torch autograd; the forms propscope does not compute
(tf_crop_and_resize, antialiased shrinking, aspect-ratio policies, scaling the batch or channels) open as a
placeholder that names the reason. The forms ONNX defines beyond PyTorch's (asymmetric coordinates, every nearest
rounding, other cubic coefficients, exclude_outside) and Upsample/Resize-10 are checked in test_onnx_old_opsets.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo
from opcheck import chained_vjps

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
F = torch.nn.functional
pytestmark = pytest.mark.torch


class Interpolations(torch.nn.Module):
    """The upsamplings segmentation heads and decoders use, one after the other."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 1)

    def forward(self, x: Any) -> Any:
        a = F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=False)  # DeepLab: back to the image
        b = F.interpolate(self.conv(a), scale_factor=2.0, mode="nearest")  # FPN: nearest ×2
        c = F.interpolate(b, size=(5, 6), mode="bilinear", align_corners=True)  # shrinking, corners aligned
        return F.interpolate(c, scale_factor=(1.5, 2.0), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_exported_interpolations_match_autograd(dynamo: bool, tmp_path: Path) -> None:
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = Interpolations().double().eval()
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 4))
    path = tmp_path / "interp.onnx"
    zoo.export_onnx(model, (x,), path, dynamo)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    assert sorted(n.op.name for n in graph if n.op.name.startswith("upsample")) == \
        ["upsample_bilinear2d"] * 3 + ["upsample_nearest2d"]
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    want = model(xt)
    upstream = np.random.default_rng(1).standard_normal(tuple(want.shape))
    (want * torch.from_numpy(upstream)).sum().backward()
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x}, loss="none")
        s.run_to_end()
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(chained_vjps(s, upstream)[graph.inputs[0].name], xt.grad.numpy(), rtol=1e-10,
                                   atol=1e-12)


# -- Resize nodes written by hand ----------------------------------------------------------------------------------
def _resize_file(path: Path, x_shape: tuple[int, ...], scales: list[float] | None, sizes: list[int] | None,
                 y_shape: list[int] | None = None, **attrs: Any) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.zeros(0), "roi")]
    inputs = ["x", "roi"]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.asarray(scales, dtype=np.float32), "scales"))
        inputs.append("scales")
    else:
        inputs.append("")
    if sizes is not None:
        inits.append(numpy_helper.from_array(np.asarray(sizes, dtype=np.int64), "sizes"))
        inputs.append("sizes")
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, y_shape)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    return path


@pytest.mark.parametrize("scales, sizes, attrs, reference", [
    ([1, 1, 2, 1.5], None, {"mode": "linear"},
     lambda x: F.interpolate(x, scale_factor=(2.0, 1.5), mode="bilinear", align_corners=False)),
    (None, [2, 3, 7, 3], {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
     lambda x: F.interpolate(x, size=(7, 3), mode="bilinear", align_corners=True)),
    (None, [2, 3, 3, 2], {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
     lambda x: F.interpolate(x, size=(3, 2), mode="bilinear", align_corners=False)),
    (None, [9, 10], {"mode": "linear", "axes": [2, 3], "antialias": 1},  # antialias changes nothing when growing
     lambda x: F.interpolate(x, size=(9, 10), mode="bilinear", align_corners=False)),
    ([3.0, 2.0], None, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor",
                        "axes": [3, 2]},
     lambda x: F.interpolate(x, scale_factor=(2.0, 3.0), mode="nearest")),
    (None, [2, 3, 5, 11], {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                           "nearest_mode": "floor"},
     lambda x: F.interpolate(x, size=(5, 11), mode="nearest")),
    ([1, 1, 2, 1.5], None, {"mode": "cubic", "cubic_coeff_a": -0.75},
     lambda x: F.interpolate(x, scale_factor=(2.0, 1.5), mode="bicubic", align_corners=False)),
    (None, [2, 3, 7, 3], {"mode": "cubic", "coordinate_transformation_mode": "align_corners"},
     lambda x: F.interpolate(x, size=(7, 3), mode="bicubic", align_corners=True)),
    (None, [9, 2], {"mode": "cubic", "coordinate_transformation_mode": "pytorch_half_pixel", "axes": [2, 3],
                    "cubic_coeff_a": -0.75},
     lambda x: F.interpolate(x, size=(9, 2), mode="bicubic", align_corners=False)),
], ids=["linear-scales", "align-corners-sizes", "pytorch-half-pixel-shrinks", "axes-antialias-grows",
        "nearest-axes-3-2", "nearest-sizes", "cubic-scales", "cubic-align-corners", "cubic-pytorch-half-pixel"])
def test_resize_written_by_hand_matches_torch(scales: list[float] | None, sizes: list[int] | None,
                                              attrs: dict[str, Any], reference: Any, tmp_path: Path) -> None:
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5))
    path = _resize_file(tmp_path / "r.onnx", x.shape, scales, sizes, **attrs)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    want = reference(xt)
    upstream = np.random.default_rng(5).standard_normal(tuple(want.shape))
    (want * torch.from_numpy(upstream)).sum().backward()
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={"x": x}, loss="none")
        s.run_to_end()
        assert s.prediction_node.op.name.startswith("upsample")
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(chained_vjps(s, upstream)["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scales, sizes, attrs, says", [
    (None, [2, 3, 2, 3], {"mode": "cubic", "antialias": 1}, "antialiased"),
    (None, [2, 3, 2, 3], {"mode": "linear", "antialias": 1}, "antialiased"),
    (None, [2, 3, 8, 8], {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"},
     "tf_crop_and_resize"),
    (None, [8, 8], {"mode": "nearest", "axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}, "aspect"),
    (None, [2, 3, 1, 4], {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, "size of one"),
    ([1, 2, 2, 2], None, {"mode": "linear"}, "batch or channel"),
    (None, [1, 3, 8, 8], {"mode": "linear"}, "batch or channel"),
], ids=["cubic-antialias-shrinks", "antialias-shrinks", "crop-and-resize", "aspect-ratio",
        "pytorch-half-pixel-to-one", "channel-scale", "batch-size"])
def test_resize_pytorch_cannot_compute_is_named_with_its_reason(scales: list[float] | None, sizes: list[int] | None,
                                                                attrs: dict[str, Any], says: str,
                                                                tmp_path: Path) -> None:
    path = _resize_file(tmp_path / "r.onnx", (2, 3, 4, 5), scales, sizes, **attrs)
    placeholders = [n for n in open_model(path).graph if n.op.name == "unsupported"]
    assert len(placeholders) == 1 and placeholders[0].meta["original_op"] == "Resize"
    assert says in placeholders[0].meta["reason"], placeholders[0].meta["reason"]


@pytest.mark.parametrize("scales, sizes", [(None, [2, 3, 10**6, 10**6]), ([1, 1, 1e9, 1e9], None)],
                         ids=["sizes", "scales"])
def test_an_absurd_resize_is_refused_before_anything_is_allocated(scales: list[float] | None,
                                                                  sizes: list[int] | None, tmp_path: Path) -> None:
    from propscope.graph.errors import ModelFormatError

    path = _resize_file(tmp_path / "huge.onnx", (2, 3, 4, 5), scales, sizes, mode="linear")
    with pytest.raises(ModelFormatError, match="over the memory budget") as info:
        open_model(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("scales, sizes, attrs, says", [
    ([1, 1, float("nan"), 2], None, {"mode": "linear"}, "must be positive"),
    ([1, 1, float("inf"), 2], None, {"mode": "linear"}, "must be positive"),
    ([1, 1, -2, 2], None, {"mode": "linear"}, "must be positive"),
    (None, [2, 3, 0, 5], {"mode": "linear"}, "empty"),
    (None, [8, 8], {"mode": "linear", "axes": [2, 7]}, "axes"),
    (None, [8, 8], {"mode": "linear", "axes": [3, -1]}, "axes"),
], ids=["nan", "inf", "negative", "zero-size", "axis-out-of-range", "axis-twice"])
def test_a_malformed_resize_is_refused_with_its_reason(scales: list[float] | None, sizes: list[int] | None,
                                                       attrs: dict[str, Any], says: str, tmp_path: Path) -> None:
    """With the output's shape declared the file opens and the Resize is a placeholder that says why; without it
    (ONNX's shape inference finds none, or an impossible one) the file is refused in one sentence."""
    from propscope.graph.errors import ModelFormatError

    declared = _resize_file(tmp_path / "declared.onnx", (2, 3, 4, 5), scales, sizes, [2, 3, 8, 8], **attrs)
    placeholders = [n for n in open_model(declared).graph if n.op.name == "unsupported"]
    assert len(placeholders) == 1 and says in placeholders[0].meta["reason"], placeholders[0].meta["reason"]
    inferred = _resize_file(tmp_path / "inferred.onnx", (2, 3, 4, 5), scales, sizes, **attrs)
    with pytest.raises(ModelFormatError) as info:
        open_model(inferred)
    assert "\n" not in str(info.value) and ("Resize" in str(info.value) or "impossible shape" in str(info.value))


# -- GridSample ----------------------------------------------------------------------------------------------------
def _grid_file(path: Path, opset: int, **attrs: Any) -> Path:
    from onnx import TensorProto, helper

    node = helper.make_node("GridSample", ["x", "grid"], ["y"], **attrs)
    graph = helper.make_graph([node], "grid", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 3, 4, 5]),
                                               helper.make_tensor_value_info("grid", TensorProto.DOUBLE, [2, 3, 6, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2, 3, 3, 6])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


@pytest.mark.parametrize("opset, attrs, torch_kw", [
    (16, {}, {"mode": "bilinear", "padding_mode": "zeros", "align_corners": False}),
    (20, {"mode": "linear", "padding_mode": "border", "align_corners": 1},
     {"mode": "bilinear", "padding_mode": "border", "align_corners": True}),
    (16, {"mode": "bilinear", "padding_mode": "reflection"},
     {"mode": "bilinear", "padding_mode": "reflection", "align_corners": False}),
    (20, {"mode": "nearest", "padding_mode": "reflection", "align_corners": 1},
     {"mode": "nearest", "padding_mode": "reflection", "align_corners": True}),
    (16, {"mode": "bicubic", "padding_mode": "border"},
     {"mode": "bicubic", "padding_mode": "border", "align_corners": False}),
    (20, {"mode": "cubic", "padding_mode": "reflection", "align_corners": 1},
     {"mode": "bicubic", "padding_mode": "reflection", "align_corners": True}),
], ids=["bilinear-zeros-16", "linear-border-corners-20", "bilinear-reflection-16", "nearest-reflection-20",
        "bicubic-border-16", "cubic-reflection-corners-20"])
def test_gridsample_written_by_hand_matches_torch(opset: int, attrs: dict[str, Any], torch_kw: dict[str, Any],
                                                  tmp_path: Path) -> None:
    """The image and the grid both inputs of the model: both get their gradients, as torch's."""
    rng = np.random.default_rng(6)
    x, grid = rng.standard_normal((2, 3, 4, 5)), rng.uniform(-1.3, 1.3, (2, 3, 6, 2))
    path = _grid_file(tmp_path / "g.onnx", opset, **attrs)
    xt, gt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, grid))
    want = F.grid_sample(xt, gt, **torch_kw)
    upstream = np.random.default_rng(7).standard_normal(tuple(want.shape))
    (want * torch.from_numpy(upstream)).sum().backward()
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={"x": x, "grid": grid}, loss="none")
        s.run_to_end()
        assert s.prediction_node.op.name == "grid_sample"
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        grads = chained_vjps(s, upstream)
        np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads["grid"], gt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opset, attrs, says", [
    (16, {"mode": "area"}, "mode 'area'"),
    (16, {"padding_mode": "wrap"}, "padding_mode 'wrap'"),
], ids=["unknown-mode", "unknown-padding"])
def test_gridsample_the_catalog_lacks_is_named(opset: int, attrs: dict[str, Any], says: str, tmp_path: Path) -> None:
    placeholders = [n for n in open_model(_grid_file(tmp_path / "g.onnx", opset, **attrs)).graph
                    if n.op.name == "unsupported"]
    assert len(placeholders) == 1 and placeholders[0].meta["original_op"] == "GridSample"
    assert says in placeholders[0].meta["reason"], placeholders[0].meta["reason"]


class Warp(torch.nn.Module):
    """Optical-flow warping (a grid computed from the input) and a ViT-style bicubic resize of position embeddings
    (scaled by the input: the dynamo exporter folds a resize of a parameter alone into a constant)."""

    def __init__(self) -> None:
        super().__init__()
        self.flow = torch.nn.Conv2d(2, 2, 1)
        self.positions = torch.nn.Parameter(torch.randn(1, 2, 3, 3))

    def forward(self, x: Any) -> Any:
        grid = 1.25 * torch.tanh(self.flow(x)).permute(0, 2, 3, 1)  # exact in float32, as dynamo writes it
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        near = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=True)
        pos = F.interpolate(self.positions * x.mean(), size=(4, 5), mode="bicubic", align_corners=False)
        return warped + near + pos + F.interpolate(x, scale_factor=(2.0, 1.5), mode="bicubic", align_corners=True
                                                   )[..., ::2, :5][..., :4, :]


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_exported_warp_and_bicubic_match_autograd(dynamo: bool, tmp_path: Path) -> None:
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = Warp().double().eval()
    x = np.random.default_rng(8).standard_normal((2, 2, 4, 5))
    path = tmp_path / "warp.onnx"
    zoo.export_onnx(model, (x,), path, dynamo, opset_version=18)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    assert sorted(n.op.name for n in graph if n.op.name in ("grid_sample", "upsample_bicubic2d")) == \
        ["grid_sample"] * 2 + ["upsample_bicubic2d"] * 2
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    want = model(xt)
    upstream = np.random.default_rng(9).standard_normal(tuple(want.shape))
    (want * torch.from_numpy(upstream)).sum().backward()
    positions = next(n.name for n in graph if n.op.name == "parameter" and n.name.endswith("positions"))
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x}, loss="none")
        s.run_to_end()
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        grads = chained_vjps(s, upstream)
        np.testing.assert_allclose(grads[graph.inputs[0].name], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads[positions], model.positions.grad.numpy(), rtol=1e-10, atol=1e-12)


class SpatialTransformer(torch.nn.Module):
    """θ computed from the image, its affine grid and the image sampled there (the TorchScript exporter writes
    AffineGrid, the dynamo exporter the product it is, its base grid folded in float32: sizes whose points are
    exact in float32)."""

    def __init__(self) -> None:
        super().__init__()
        self.loc = torch.nn.Linear(2 * 4 * 5, 6)

    def forward(self, x: Any) -> Any:
        theta = self.loc(x.flatten(1)).reshape(-1, 2, 3)
        wide = F.grid_sample(x, F.affine_grid(theta, [2, 2, 4, 8], align_corners=False), align_corners=False)
        aligned = F.grid_sample(x, F.affine_grid(theta, [2, 2, 3, 5], align_corners=True), padding_mode="border",
                                align_corners=True)
        return torch.cat([wide.flatten(1), aligned.flatten(1)], dim=1)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_exported_spatial_transformer_matches_autograd(dynamo: bool, tmp_path: Path) -> None:
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = SpatialTransformer().double().eval()
    x = np.random.default_rng(10).standard_normal((2, 2, 4, 5))
    path = tmp_path / "stn.onnx"
    zoo.export_onnx(model, (x,), path, dynamo)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    assert sum(n.op.name == "grid_sample" for n in graph) == 2
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    want = model(xt)
    upstream = np.random.default_rng(11).standard_normal(tuple(want.shape))
    (want * torch.from_numpy(upstream)).sum().backward()
    weight = next(n.name for n in graph if n.op.name == "parameter" and n.name.endswith("weight"))
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x}, loss="none")
        s.run_to_end()
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        grads = chained_vjps(s, upstream)
        np.testing.assert_allclose(grads[graph.inputs[0].name], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads[weight], model.loc.weight.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("size, theta, says", [
    ([2, 3, 4], (2, 2, 3), "size of 3 axes"),
    ([2, 3, 4, 5], (2, 3, 4), "θ must be (N, 2, 3)"),
    ([3, 3, 4, 5], (2, 2, 3), "θ must be (N, 2, 3)"),
    ([2, 3, 0, 5], (2, 2, 3), "θ must be"),
], ids=["size-3-axes", "volume-theta-for-image", "batch-differs", "empty"])
def test_a_malformed_affinegrid_is_named(size: list[int], theta: tuple[int, ...], says: str, tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("AffineGrid", ["theta", "size"], ["grid"])
    graph = helper.make_graph([node], "affine", [helper.make_tensor_value_info("theta", TensorProto.DOUBLE, theta)],
                              [helper.make_tensor_value_info("grid", TensorProto.DOUBLE, [2, 4, 5, 2])],
                              [numpy_helper.from_array(np.asarray(size, dtype=np.int64), "size")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(tmp_path / "a.onnx"))
    placeholders = [n for n in open_model(tmp_path / "a.onnx").graph if n.op.name == "unsupported"]
    assert len(placeholders) == 1 and says in placeholders[0].meta["reason"], placeholders[0].meta["reason"]


class VolumeWarp(torch.nn.Module):
    """VoxelMorph's spatial transformer: a volume warped by the identity grid plus a flow field computed from it."""

    def __init__(self) -> None:
        super().__init__()
        self.flow = torch.nn.Conv3d(2, 3, 1)

    def forward(self, x: Any) -> Any:
        identity = F.affine_grid(torch.eye(3, 4, dtype=x.dtype)[None].expand(2, 3, 4), list(x.shape),
                                 align_corners=True)
        grid = identity + 0.5 * torch.tanh(self.flow(x)).permute(0, 2, 3, 4, 1)
        return F.grid_sample(x, grid, align_corners=True) + F.grid_sample(x, grid, mode="nearest",
                                                                          padding_mode="border", align_corners=True)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_exported_volume_warp_matches_autograd(dynamo: bool, tmp_path: Path) -> None:
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = VolumeWarp().double().eval()
    x = np.random.default_rng(12).standard_normal((2, 2, 3, 5, 3))  # sizes whose grid points are exact in float32
    path = tmp_path / "warp3d.onnx"
    zoo.export_onnx(model, (x,), path, dynamo)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    assert sum(n.op.name == "grid_sample" for n in graph) == 2
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    want = model(xt)
    upstream = np.random.default_rng(13).standard_normal(tuple(want.shape))
    (want * torch.from_numpy(upstream)).sum().backward()
    weight = next(n.name for n in graph if n.op.name == "parameter" and n.name.endswith("weight"))
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x}, loss="none")
        s.run_to_end()
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        grads = chained_vjps(s, upstream)
        np.testing.assert_allclose(grads[graph.inputs[0].name], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads[weight], model.flow.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
