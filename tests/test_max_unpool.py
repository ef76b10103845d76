"""Max unpooling (SegNet's decoder: nn.MaxPool2d(return_indices=True) then nn.MaxUnpool2d) read from files: a .pt2
as is (`aten.max_pool2d_with_indices` feeding `aten.max_unpool2d`) and an ONNX MaxPool whose Indices feed a
MaxUnpool, written by hand (torch's exporters write the unpool as index arithmetic and a scatter, or fail); each
stepped on the NumPy and the torch backend against torch autograd in float64. Indices used any other way, or
given as an input, are refused by name.
"""

from __future__ import annotations

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


class SegNetBlock(nn.Module):
    """Encoder conv, max pool keeping its indices, a conv on the pooled map, unpool back to the odd size, decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.mid, self.dec = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 3, 1)
        self.pool, self.unpool = nn.MaxPool2d(2, 2, return_indices=True), nn.MaxUnpool2d(2, 2)

    def forward(self, x: Any) -> Any:
        h = torch.relu(self.enc(x))
        pooled, indices = self.pool(h)
        up = self.unpool(torch.relu(self.mid(pooled)), indices, output_size=h.shape[-2:])
        return self.dec(up).permute(0, 2, 3, 1).reshape(-1, 3)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_segnet_block_in_a_pt2_steps_with_autograds_numbers(backend: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo._jitter(SegNetBlock()).double().eval()
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 7))
    with torch.no_grad():
        y = np.random.default_rng(1).integers(0, 3, model(torch.from_numpy(x)).shape[0])
    path = tmp_path / "segnet.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (torch.from_numpy(x),)), str(path))
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    assert [n.op.name for n in graph if n.op.name.startswith("max_")] == ["max_pool2d", "max_unpool2d"]
    s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x, "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert zoo.relative(s.backend.to_numpy(s.grad(graph.inputs[0].name)), input_grad) <= 1e-10
    for name, grad in grads.items():
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), grad) <= 1e-10, name


def _pool_unpool_file(path: Path, indices_from_pool: bool, pads: list[int] | None = None) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    pool_attrs: dict[str, Any] = {"kernel_shape": [2, 2], "strides": [2, 2]}
    if pads:
        pool_attrs["pads"] = pads
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("MaxPool", ["h"], ["p", "i"], **pool_attrs),
             helper.make_node("Neg", ["p"], ["q"]),
             helper.make_node("MaxUnpool", ["q", "i" if indices_from_pool else "given"], ["y"], **pool_attrs)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 3, 6, 8])]
    if not indices_from_pool:
        inputs.append(helper.make_tensor_value_info("given", TensorProto.INT64, [2, 3, 3, 4]))
    graph = helper.make_graph(nodes, "unpool", inputs, [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_maxpool_indices_into_maxunpool_match_torch(tmp_path: Path) -> None:
    path = _pool_unpool_file(tmp_path / "unpool.onnx", indices_from_pool=True)
    x = np.random.default_rng(2).permutation(2 * 3 * 6 * 8).reshape(2, 3, 6, 8) * 0.05 - 1.0  # no ties
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    h = torch.relu(xt)
    pooled, indices = F.max_pool2d(h, 2, 2, return_indices=True)
    want = F.max_unpool2d(-pooled, indices, 2, 2)
    upstream = np.random.default_rng(3).standard_normal(tuple(want.shape))
    (want * torch.from_numpy(upstream)).sum().backward()
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={"x": x}, loss="none")
        s.run_to_end()
        assert s.prediction_node.op.name == "max_unpool2d"
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(chained_vjps(s, upstream)["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_maxunpool_of_indices_from_elsewhere_is_named(tmp_path: Path) -> None:
    path = _pool_unpool_file(tmp_path / "given.onnx", indices_from_pool=False)
    placeholders = [n for n in open_model(path).graph if n.op.name == "unsupported"]
    assert [n.meta["original_op"] for n in placeholders] == ["MaxUnpool"]
    assert "no 2-D MaxPool of this graph made" in placeholders[0].meta["reason"]
