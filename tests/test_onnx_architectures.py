"""The architectures engineers bring, exported to ONNX by both of torch's exporters, opened and stepped.

Each model of `zoo.ARCHITECTURES` (float64, random weights) is exported once per exporter: the new
`torch.onnx.export(..., dynamo=True)` (onnxscript; its idioms: IsNaN/Where in attention, LSTM/GRU with an
initial state computed at run time, InstanceNormalization for GroupNorm, BatchNorm folded into the
convolutions) and the TorchScript one (`dynamo=False`). propscope opens the file with no unsupported op and
steps to the end of the backward pass on the NumPy and on the torch backend; the loss and the input
gradient must equal torch autograd's on the original model, to 1e-9 relative, or 1e-6 where the exporter
folded BatchNorm into the weights (it does so in float32). The dynamo exporter also stores Python scalars as
float32 values in float64 models (quick-GELU's 1.702 becomes 1.7020000219, an attention scale of 8^-1/2
0.35355338): each such scalar the file declares widens the tolerance by the float32 rounding it may carry (half
a float32 ulp, relative), and nothing else does. Where an exporter cannot export a model, the test is skipped
with the exporter's own reason.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any

import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytestmark = [pytest.mark.torch, pytest.mark.slow]

EXPORTERS = ("dynamo", "torchscript")
EXACT, FOLDED_BATCHNORM = 1e-9, 1e-6


ARCHITECTURES = zoo.params()


class Exported:
    """Each architecture built once and exported once per exporter, on first use; export failures kept."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[tuple[str, str], Path | str] = {}

    def file(self, name: str, exporter: str) -> Path:
        key = (name, exporter)
        if key not in self.files:
            model, inputs, _ = zoo.built(name)
            path = self.folder / f"{name}.{exporter}.onnx"
            args = tuple(torch.from_numpy(a) for a in inputs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                logging.disable(logging.WARNING)  # the dynamo exporter reports its progress as warnings
                try:
                    torch.onnx.export(copy.deepcopy(model), args, str(path), dynamo=exporter == "dynamo")
                    self.files[key] = path
                except Exception as exc:  # the exporter's own limitation, not ours: skipped with its words
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    self.files[key] = f"{type(exc).__name__}: {first[:200]}"
                finally:
                    logging.disable(logging.NOTSET)
        found = self.files[key]
        if isinstance(found, str):
            pytest.skip(f"torch.onnx.export(dynamo={exporter == 'dynamo'}) cannot export {name}: {found}")
        return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return Exported(tmp_path_factory.mktemp("onnx_architectures"))


def tolerance(model: Any, path: Path) -> float:
    """1e-6 where the exporter folded the model's BatchNorm layers into the convolutions, else 1e-9; plus the
    float32 rounding of the scalars the file stores as float32 values (`float32_scalar_rounding`)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    has_batchnorm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    kept = any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    return (FOLDED_BATCHNORM if has_batchnorm and not kept else EXACT) + float32_scalar_rounding(proto)


def float32_scalar_rounding(proto: Any) -> float:
    """The relative error the file's float32-rounded scalars may carry, summed over the distinct ones: a one-element
    float64 constant or initializer whose value is a float32 value other than the short decimal it reads as in
    float64 (1.7020000219345093, not 0.25) was rounded to float32 on the way (the dynamo exporter's Python scalars);
    each may be half a float32 ulp from the model's value."""
    import numpy as np
    from onnx import numpy_helper

    tensors = [*proto.graph.initializer,
               *(a.t for n in proto.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value")]
    rounded = set()
    for t in tensors:
        if t.data_type == 11 and len(t.dims) <= 1 and all(d == 1 for d in t.dims):  # DOUBLE, one element
            value = float(numpy_helper.to_array(t).reshape(()))
            single = np.float32(value)
            if value and np.isfinite(value) and float(single) == value and repr(value) != str(single):
                rounded.add(value)
    return sum(float(np.spacing(np.float32(abs(v)))) / 2 / abs(v) for v in rounded)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_opens_with_every_op_supported(name: str, exporter: str, exported: Exported) -> None:
    model = open_model(exported.file(name, exporter))
    unsupported = sorted({f"{n.meta.get('original_op', '?')} ({n.meta.get('reason', '')})" for n in model.graph
                          if n.op.name == "unsupported"})
    assert not unsupported, f"{name} ({exporter}): unsupported ops {unsupported}"


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_steps_to_the_end_with_autograds_loss_and_input_gradient(name: str, exporter: str, backend: str,
                                                                  exported: Exported) -> None:
    path = exported.file(name, exporter)
    model, inputs, y = zoo.built(name)
    graph_inputs = [n.name for n in open_model(path).graph.inputs]
    assert len(graph_inputs) == len(inputs), f"inputs {graph_inputs}"
    data = {**dict(zip(graph_inputs, inputs, strict=True)), "y": y}
    s = open_session(path, backend=backend, dtype="float64", data=data, loss="cross_entropy")
    s.run_to_end()
    assert s.at_end
    loss, _, input_grads = zoo.autograd_reference(model, inputs, y)
    tol = tolerance(model, path)
    got_loss = float(s.backend.to_numpy(s.value(s.loss_node.name)))
    assert abs(got_loss - loss) <= tol * max(1.0, abs(loss)), f"loss {got_loss} != {loss}"
    for name_in, grad in zip(graph_inputs, input_grads, strict=True):
        if grad is not None:
            err = zoo.relative(s.backend.to_numpy(s.grad(name_in)), grad)
            assert err <= tol, f"input {name_in}: relative difference {err:.3g} (tolerance {tol:g})"


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_renamed_weights_are_shown_under_their_module(exporter: str, exported: Exported) -> None:
    """`onnx::MatMul_33` / `val_12` (a Linear's weight stored transposed) is `encoder.layers.0.linear1.weight` in
    nn.Linear's (out, in) layout, read by a `linear` that transposes it, as a .pt2's Linear is."""
    model = open_model(exported.file("transformer_encoder", exporter))
    names = {n.name: n for n in model.graph.leaves}
    generated = sorted(n for n in names if n.startswith("onnx::") or n.startswith("val_"))
    assert not generated, f"exporter names shown to the user: {generated}"
    weight = names["encoder.layers.0.linear1.weight"]
    assert weight.op.name == "parameter" and weight.module == "encoder.layers.0.linear1"
    assert weight.shape == (32, 16) and weight.meta["stored"] == "transposed"  # torch's Linear.weight, as named
    assert str(weight.meta["file_name"]).startswith("onnx::" if exporter == "torchscript" else "val_")
    users = model.graph.users(weight)
    assert [u.op.name for u in users] == ["linear"] and users[0].attrs["transpose_weight"]


def _clip_quick_gelu() -> tuple[Any, tuple[Any, ...], Any]:
    """The zoo's CLIP vision tower as CLIP ships it: quick-GELU (x·σ(1.702·x)) and 8-wide heads (a scale of
    8^-1/2), the two Python scalars the dynamo exporter stores as float32 values."""
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, image_size=32, patch_size=8,
                                           hidden_act="quick_gelu")
    config = transformers.CLIPConfig(vision_config=vision.to_dict(), num_labels=10, attn_implementation="eager")
    model = zoo._Float64.wrap(transformers.CLIPForImageClassification(config), ("pixel_values",), flatten=False)
    return zoo._jitter(model).double().eval(), (zoo._images(),), zoo._labels(2, 10)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_clip_with_quick_gelu_matches_within_its_float32_scalars_rounding(exporter: str, tmp_path: Path) -> None:
    model, inputs, y = _clip_quick_gelu()
    path = tmp_path / f"clip_quick_gelu.{exporter}.onnx"
    zoo.export_onnx(model, inputs, path, exporter == "dynamo")
    tol = tolerance(model, path)
    import onnx

    rounding = float32_scalar_rounding(onnx.load(str(path), load_external_data=False))
    assert (rounding > 0) == (exporter == "dynamo"), rounding  # 1.702 and 8^-1/2, rounded by the dynamo exporter
    assert rounding < 1e-7
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    names = [n.name for n in graph.inputs]
    loss, _, (input_grad,) = zoo.autograd_reference(model, inputs, y)
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={names[0]: inputs[0], "y": y},
                         loss="cross_entropy")
        s.run_to_end()
        got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
        assert abs(got - loss) <= tol * max(1.0, abs(loss)), f"{backend}: loss {got} != {loss}"
        err = zoo.relative(s.backend.to_numpy(s.grad(names[0])), input_grad)
        assert err <= tol, f"{backend}: relative difference {err:.3g} (tolerance {tol:g})"
