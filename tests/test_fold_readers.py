"""nn.Unfold and nn.Fold (F.unfold, F.fold: patch extraction and its adjoint, as in T2T-ViT's soft split or a
sliding-window attention) read from files: a .pt2 as is (`aten.im2col`, `aten.col2im`), both ONNX exporters
(gathers for the unfold, `Col2Im` for the fold) and a Col2Im written by hand with asymmetric pads; stepped on the
NumPy and the torch backend and compared with torch autograd in float64.
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
from opcheck import chained_vjps

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
pytestmark = pytest.mark.torch


class Patches(nn.Module):
    """Overlapping 3×3 patches (stride 2), mixed by a linear layer, summed back into the image."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Linear(2 * 9, 2 * 9)

    def forward(self, x: Any) -> Any:
        cols = F.unfold(x, 3, padding=1, stride=2)
        cols = self.mix(cols.transpose(1, 2)).transpose(1, 2)
        return F.fold(cols, (5, 6), 3, padding=1, stride=2).flatten(1)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("form", ["pt2-as-is", "onnx-dynamo", "onnx-torchscript"])
def test_unfold_and_fold_step_with_autograds_numbers(form: str, backend: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo._jitter(Patches()).double().eval()
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 6))
    y = np.random.default_rng(1).integers(0, 60, 2)
    path = tmp_path / ("p.pt2" if form.startswith("pt2") else "p.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if form.startswith("pt2"):
            torch.export.save(torch.export.export(model, (torch.from_numpy(x),)), str(path))
        else:
            if form.endswith("dynamo"):
                pytest.importorskip("onnxscript")
            logging.disable(logging.WARNING)
            try:
                torch.onnx.export(copy.deepcopy(model), (torch.from_numpy(x),), str(path),
                                  dynamo=form.endswith("dynamo"))
            finally:
                logging.disable(logging.NOTSET)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    assert "col2im" in {n.op.name for n in graph}
    s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x, "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert zoo.relative(s.backend.to_numpy(s.grad(graph.inputs[0].name)), input_grad) <= 1e-10
    if form.startswith("pt2"):
        for name, grad in grads.items():
            assert zoo.relative(s.backend.to_numpy(s.grad(name)), grad) <= 1e-10, name


def test_onnx_col2im_with_asymmetric_pads_matches_torch(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    # a 4×5 image padded by (top 1, bottom 1, left 2, right 1) is 6×8: 3×4 windows of 2×2 at stride 2
    inits = [numpy_helper.from_array(np.array([4, 5], dtype=np.int64), "image"),
             numpy_helper.from_array(np.array([2, 2], dtype=np.int64), "block")]
    node = helper.make_node("Col2Im", ["x", "image", "block"], ["y"], pads=[1, 2, 1, 1], strides=[2, 2])
    graph = helper.make_graph([node], "col2im", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], inits)
    path = tmp_path / "col2im.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    x = np.random.default_rng(2).standard_normal((2, 12, 12))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    want = F.fold(xt, (6, 8), 2, stride=2)[:, :, 1:5, 2:7]
    upstream = np.random.default_rng(3).standard_normal(tuple(want.shape))
    (want * torch.from_numpy(upstream)).sum().backward()
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={"x": x}, loss="none")
        s.run_to_end()
        assert s.prediction_node.op.name == "col2im"
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(chained_vjps(s, upstream)["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
