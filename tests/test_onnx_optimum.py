"""The ONNX files Hugging Face users have: optimum's exports (`optimum-cli export onnx`), as transformers.js folders
hold them, opened and stepped on both backends against torch autograd of the same transformers module.

The files and the autograd numbers are made by hand by `tests/data/optimum/make.py` (it needs optimum-onnx, which
pins an older transformers than the project's): GPT-2 with its past (`model.onnx`: `past_key_values.N.key/value`
inputs, `present.*` outputs, position ids) at an empty past and a past of 3; the merged decoder
(`decoder_model_merged.onnx`: one If on `use_cache_branch`, the shared weights renamed `*_merged_0`, the attention
mask declared with the tokens' length) on each branch; T5's merged decoder (cross-attention past, relative
positions); BART's decoder whose tied output layer is a transposed copy of the token table (`onnx::MatMul_N`); and
onnxruntime's dynamic quantization of GPT-2 (MatMulInteger, DynamicQuantizeLinear) against onnxruntime's forward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.debugger import open_session
from propscope.graph.errors import ShapeError
from propscope.graph.model import READ_AT, fit_batch
from propscope.graph.readers import open_model

DATA = Path(__file__).parent / "data" / "optimum"
EXACT = 1e-9
CASES = [("gpt2/model.onnx", "gpt2/with_past_0.npz"), ("gpt2/model.onnx", "gpt2/with_past_3.npz"),
         ("gpt2/decoder_model_merged.onnx", "gpt2/merged_first.npz"),
         ("gpt2/decoder_model_merged.onnx", "gpt2/merged_next.npz"),
         ("t5/decoder_model_merged.onnx", "t5/merged_first.npz"),
         ("t5/decoder_model_merged.onnx", "t5/merged_next.npz"),
         ("bart/decoder_model.onnx", "bart/decoder.npz")]


def _reference(npz: str) -> tuple[dict[str, np.ndarray], np.ndarray, str, float, dict[str, np.ndarray],
                                  dict[str, np.ndarray]]:
    with np.load(DATA / npz) as f:
        part = {k: f[k] for k in f.files}
    data = {k[5:]: v for k, v in part.items() if k.startswith("data/")}
    grads = {k[5:]: v for k, v in part.items() if k.startswith("grad/")}
    input_grads = {k[11:]: v for k, v in part.items() if k.startswith("input_grad/")}
    return data, part["y"], str(part["loss_name"]), float(part["loss"]), grads, input_grads


def _relative(got: np.ndarray, want: np.ndarray, floor: float) -> float:
    """The largest difference relative to the larger of `want`'s largest magnitude and `floor` (a gradient that is
    zero in exact arithmetic, a key bias's under softmax, is autograd's rounding)."""
    scale = max(float(np.max(np.abs(want), initial=0.0)), floor)
    return float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want), initial=0.0)) / scale


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("file", "npz"), CASES, ids=[n.replace("/", "-")[:-4] for _, n in CASES])
def test_loss_and_every_gradient_equal_autograds(file: str, npz: str, backend: str) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    data, y, loss_name, loss, grads, input_grads = _reference(npz)
    s = open_session(DATA / file, backend=backend, dtype="float64", data={**data, "y": y}, loss=loss_name)
    assert not [n.name for n in s.graph if n.op.name == "unsupported"]
    s.run_to_end()
    got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
    assert abs(got - loss) <= EXACT * max(1.0, abs(loss)), f"loss {got} != {loss}"
    floor = 1e-6 * max(float(np.max(np.abs(g))) for g in grads.values())
    parameters = [n.name for n in s.graph.parameters]
    unnamed = [p for p in parameters if p not in grads]
    assert not unnamed, f"parameters autograd does not know by these names: {unnamed}"
    for name in parameters:
        err = _relative(s.backend.to_numpy(s.grad(name)), grads[name], floor)
        assert err <= EXACT, f"{name}: relative difference {err:.3g}"
    for name, want in input_grads.items():
        err = _relative(s.backend.to_numpy(s.grad(name)), want, floor)
        assert err <= EXACT, f"input {name}: relative difference {err:.3g}"


def test_tied_output_layer_is_the_token_table() -> None:
    """BART's output layer, stored as `onnx::MatMul_N` (the token table transposed), is `model.shared.weight`: one
    parameter, as in the module (it was a second one, each of the two getting half of torch's gradient)."""
    model = open_model(DATA / "bart" / "decoder_model.onnx")
    names = [n.name for n in model.graph.parameters]
    assert "model.shared.weight" in names and not [n for n in names if "MatMul" in n or n == "lm_head.weight"]
    assert model.aliases.get("lm_head.weight") == "model.shared.weight"


def test_merged_decoder_reads_its_branch_and_its_own_names() -> None:
    """The first step's data (an empty past, use_cache_branch false), then the next step's (a past of 3, true): the
    session reads the file again on the other branch, with autograd's loss; its parameters keep the model's names
    (optimum's merge renamed every shared one `*_merged_0`). A graph read on one branch refuses data that picks the
    other in one line, where nothing reads it again."""
    first, y_first, _, loss_first, _, _ = _reference("gpt2/merged_first.npz")
    data, y, _, loss, _, _ = _reference("gpt2/merged_next.npz")
    s = open_session(DATA / "gpt2" / "decoder_model_merged.onnx", dtype="float64", data={**first, "y": y_first},
                     loss="cross_entropy")
    names = [n.name for n in s.graph.parameters]
    assert "transformer.wte.weight" in names and not [n for n in names if "_merged_" in n]
    s.run_to_end()
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss_first) <= EXACT * loss_first
    s.set_batch({**first, "use_cache_branch": np.array([True]), "y": y_first})  # same sizes, the other branch
    assert s.graph["use_cache_branch"].meta[READ_AT][0] is True
    s.run_to_end()  # an empty past: both branches compute the first step
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss_first) <= EXACT * loss_first
    s.set_batch({**data, "y": y})
    s.run_to_end()
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= EXACT * loss
    with pytest.raises(ShapeError, match="'use_cache_branch' is false in the data, but the model was read with it "
                                         "true"):
        fit_batch(s.model.graph, {**data, "use_cache_branch": np.array([False])})


def test_merged_decoder_without_data_reads_the_branch_its_past_says() -> None:
    model = open_model(DATA / "gpt2" / "decoder_model_merged.onnx")
    said = [w for w in model.warnings if "use_cache_branch" in w]
    assert said and "read as true" in said[0], model.warnings
    assert not [n for n in model.graph if n.op.name == "unsupported"]


def test_dynamic_quantization_matches_onnxruntime() -> None:
    """`quantize_dynamic` (what `optimum-cli onnxruntime quantize --avx2` runs) of GPT-2 with its past: the logits
    equal onnxruntime's forward (float32, onnxruntime's own graph optimizations off) to float32 rounding."""
    with np.load(DATA / "gpt2_int8" / "onnxruntime.npz") as f:
        data = {k[5:]: f[k] for k in f.files if k.startswith("data/")}
        logits = f["logits"]
    s = open_session(DATA / "gpt2_int8" / "model_quantized.onnx", dtype="float32", data=data, loss="none")
    s.run_to_end()
    got = s.backend.to_numpy(s.value(s.graph.outputs[0].name)).reshape(logits.shape)
    assert _relative(got, logits.astype(np.float64), 0.0) <= 1e-6


def test_symbolic_sizes_at_1_say_which_input_and_where_they_fail(tmp_path: Path) -> None:
    """optimum's image models leave every size of `pixel_values` symbolic (batch_size, num_channels, height,
    width): read without data at 1, the patch convolution cannot take 1 channel. The error names the input, its
    dimensions and the op, in one line (it said `output 'logits' cannot be built` after an unrelated Reshape)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from propscope.graph.errors import ModelFormatError

    dims = ["batch_size", "num_channels", "height", "width"]
    weight = numpy_helper.from_array(np.ones((4, 3, 2, 2), dtype=np.float32), "patch.weight")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixel_values", "patch.weight"], ["h"], name="/patch/Conv", strides=[2, 2]),
         helper.make_node("Relu", ["h"], ["logits"], name="/act/Relu")], "vit",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", 4, "h", "w"])], [weight])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelFormatError) as caught:
        open_model(path)
    said = str(caught.value)
    assert "\n" not in said and "input 'pixel_values' (batch_size, num_channels, height, width)" in said, said
    assert "read as 1 without data" in said and "Conv 'patch.Conv' cannot run" in said and "3 input channels" in said
    data = {"pixel_values": np.random.default_rng(0).standard_normal((2, 3, 4, 4))}
    s = open_session(path, dtype="float64", data=data, loss="none")  # with data, it reads
    s.run_to_end()
    assert s.backend.to_numpy(s.value(s.graph.outputs[0].name)).shape == (2, 4, 2, 2)


@pytest.mark.parametrize("file", ["model_q4.onnx", "model_q4_zero_points.onnx"])
def test_four_bit_weights_match_onnxruntime_and_have_gradients(file: str) -> None:
    """onnxruntime's MatMulNBits (4-bit blocks of 16 along K, one scale each; the middle of the range or packed zero
    points): each is a Linear whose (N, K) weight holds the dequantized values, a parameter with its gradient. The
    logits equal onnxruntime's to float32 rounding; the gradients on both backends agree."""
    with np.load(DATA / "bert_q4" / "onnxruntime.npz") as f:
        data = {k[5:]: f[k] for k in f.files if k.startswith("data/")}
        logits = f[f"logits/{file}"]
    path = DATA / "bert_q4" / file
    assert "MatMulNBits" in path.read_bytes().decode("latin-1")
    y = np.array([0, 2])
    grads = {}
    for backend in ("numpy", "torch"):
        if backend == "torch":
            pytest.importorskip("torch")
        s = open_session(path, backend=backend, dtype="float64", data={**data, "y": y}, loss="cross_entropy")
        assert not [n.name for n in s.graph if n.op.name == "unsupported"]
        s.run_to_end()
        got = s.backend.to_numpy(s.value(s.loss_node.inputs[0].name)).reshape(logits.shape)
        assert _relative(got, logits.astype(np.float64), 0.0) <= 1e-6
        grads[backend] = {n.name: s.backend.to_numpy(s.grad(n.name)) for n in s.graph.parameters}
    weight = "bert.encoder.layer.0.attention.self.query.weight"
    assert weight in grads["numpy"] and grads["numpy"][weight].shape == (16, 16)
    if "torch" in grads:
        floor = 1e-6 * max(float(np.max(np.abs(g))) for g in grads["numpy"].values())
        for name, g in grads["numpy"].items():
            assert _relative(grads["torch"][name], g, floor) <= EXACT, name


@pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")
def test_the_app_reads_the_other_branch_off_its_thread(qtbot: Any, tmp_path: Path) -> None:
    """File ▸ Load data whose `use_cache_branch` picks the other branch at the same sizes: the file is read again in
    a job, as for new sizes (it was read on the GUI thread: "read again?" looked at the sizes only), then used."""
    from propscope.gui.main_window import MainWindow

    first, y_first, _, loss_first, _, _ = _reference("gpt2/merged_first.npz")
    s = open_session(DATA / "gpt2" / "decoder_model_merged.onnx", dtype="float64", data={**first, "y": y_first},
                     loss="cross_entropy")
    flipped = {**first, "use_cache_branch": np.array([True]), "y": y_first}
    shapes = {k: np.shape(v) for k, v in flipped.items()}
    assert s.reads_again_at(shapes, flipped) and not s.reads_again_at(shapes, {**first, "y": y_first})
    window = MainWindow(s, settings=None)
    qtbot.addWidget(window)
    window.show()
    data = tmp_path / "next.npz"
    np.savez(data, **flipped)
    assert window.load_data_path(data)
    assert window.jobs  # read again in a job, not on the GUI thread
    qtbot.waitUntil(lambda: window.bridge.session.graph["use_cache_branch"].meta[READ_AT][0] is True, timeout=60_000)
    assert "Data from next.npz" in window.status_message.text() and not window.jobs
    s = window.bridge.session
    s.run_to_end()
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss_first) <= EXACT * loss_first
    window.close()
