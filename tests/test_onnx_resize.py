"""ONNX Resize read onto the catalog's nearest and bilinear upsampling: files written by both of torch's exporters
(F.interpolate by size and by scale, bilinear with and without align_corners, nearest) and Resize nodes written by
hand (scales or sizes as initializers, `axes`, pytorch_half_pixel, downsampling), stepped on the NumPy and the
torch backend and compared with torch autograd; the forms PyTorch cannot compute (cubic, nearest-exact rounding,
tf_crop_and_resize, antialiased shrinking, aspect-ratio policies) open as a placeholder that names the reason.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            torch.onnx.export(copy.deepcopy(model), (torch.from_numpy(x),), str(path), dynamo=dynamo)
        finally:
            logging.disable(logging.NOTSET)
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
], ids=["linear-scales", "align-corners-sizes", "pytorch-half-pixel-shrinks", "axes-antialias-grows",
        "nearest-axes-3-2", "nearest-sizes"])
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
    (None, [2, 3, 8, 10], {"mode": "cubic"}, "mode 'cubic'"),
    (None, [2, 3, 8, 10], {"mode": "nearest"}, "round_prefer_floor"),
    (None, [2, 3, 2, 3], {"mode": "linear", "antialias": 1}, "antialiased"),
    (None, [2, 3, 8, 8], {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"},
     "tf_crop_and_resize"),
    (None, [2, 3, 8, 8], {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, "asymmetric"),
    (None, [8, 8], {"mode": "nearest", "axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}, "aspect"),
    (None, [2, 3, 1, 4], {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, "size of one"),
    ([1, 2, 2, 2], None, {"mode": "linear"}, "batch or channel"),
    (None, [1, 3, 8, 8], {"mode": "linear"}, "batch or channel"),
], ids=["cubic", "nearest-exact", "antialias-shrinks", "crop-and-resize", "asymmetric-linear", "aspect-ratio",
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
