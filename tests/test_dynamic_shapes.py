"""Models exported with dynamic shapes: `torch.export` with `Dim`s (a `.pt2` whose program computes sizes with
`sym_size` and arithmetic on it), ONNX with symbolic dimensions (`dim_param`: the dynamo exporter's dynamic shapes,
the TorchScript exporter's `dynamic_axes`).

Each opens at its example's sizes (a `.pt2`) or with its symbols at 1 (an ONNX file, said in a warning naming each),
and is read again at the data's sizes where data is given: the sizes the file fixes stay, only the symbolic ones
follow. A tiny GPT-2 (dynamic batch and sequence) opens with no unsupported op and matches torch autograd in float64
(forward, loss and every weight's gradient) at the example's (2, 8) and at (3, 5); a small CNN with a dynamic batch
(all three exporters) and a dynamic image size, and an LSTM with a dynamic sequence length, run a batch of other
sizes and match torch. Refused in one line each: data that disagrees on a shared symbol, a size outside the range the
program was exported for, a symbol the file gives no size for (with no data).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import zoo  # noqa: E402  (after the importorskip: zoo builds torch models)

from propscope.cli import main  # noqa: E402
from propscope.debugger import open_session  # noqa: E402
from propscope.graph.errors import ModelFormatError, ShapeError  # noqa: E402
from propscope.graph.readers import open_model  # noqa: E402

pytestmark = pytest.mark.torch
VOCAB = 128


def _export_onnx(module: Any, args: tuple[Any, ...], path: Path, **options: Any) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation, onnxscript's notes
        torch.onnx.export(module, args, str(path), **options)
    return path


def _needs_dynamo_onnx() -> None:
    for library in ("onnx", "onnxscript"):
        pytest.importorskip(library, reason=f"torch.onnx.export(dynamo=True) needs {library}")


# -- GPT-2, dynamic batch and sequence -----------------------------------------------------------------
class _Logits(torch.nn.Module):
    """GPT-2 returning its logits alone, as an ONNX export takes it."""

    def __init__(self, lm: Any) -> None:
        super().__init__()
        self.m = lm

    def forward(self, ids: Any) -> Any:
        return self.m(input_ids=ids, use_cache=False).logits


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    if not zoo.has_transformers():
        pytest.skip("needs transformers")
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=64)
    lm = transformers.GPT2LMHeadModel(config).eval()
    lm.config.use_cache = False
    with torch.no_grad():  # every weight its own values: the ONNX exporter shares equal initializers (LN's ones)
        for p in lm.parameters():
            p.normal_(0.0, 0.3)
    folder = tmp_path_factory.mktemp("gpt2")
    ids = torch.randint(0, VOCAB, (2, 8))
    batch, seq = torch.export.Dim("batch", min=1, max=16), torch.export.Dim("seq", min=2, max=64)
    program = torch.export.export(lm, (), {"input_ids": ids}, dynamic_shapes={"input_ids": {0: batch, 1: seq}})
    torch.export.save(program, str(folder / "gpt2_dyn.pt2"))
    return lm, folder


def _gpt2_dynamo_onnx(lm: Any, folder: Path) -> Path:
    _needs_dynamo_onnx()
    path = folder / "gpt2_dynamo.onnx"
    if not path.exists():
        batch, seq = torch.export.Dim("batch", min=1, max=16), torch.export.Dim("seq", min=2, max=64)
        _export_onnx(_Logits(lm).eval(), (torch.randint(0, VOCAB, (2, 8)),), path, input_names=["input_ids"],
                     output_names=["logits"], dynamic_shapes={"ids": {0: batch, 1: seq}}, dynamo=True)
    return path


def _torch_loss_and_grads(lm: Any, ids: np.ndarray, labels: np.ndarray) -> tuple[Any, float, dict[str, np.ndarray]]:
    """The logits, loss (cross-entropy per token, as the LM's own loss) and weight gradients, autograd in float64."""
    double = type(lm)(lm.config).double().eval()
    double.load_state_dict({k: v.double() for k, v in lm.state_dict().items()})
    logits = double(input_ids=torch.tensor(ids)).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), torch.tensor(labels).reshape(-1))
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in double.named_parameters()}  # tied: the head's is the embedding's
    return logits.detach().numpy(), float(loss.detach()), grads


def _check_gpt2(s: Any, lm: Any, ids: np.ndarray, labels: np.ndarray, prefix: str, rtol: float) -> None:
    s.run_to_end()
    logits, loss, grads = _torch_loss_and_grads(lm, ids, labels)
    rows = s.prediction_node
    np.testing.assert_allclose(s.value(rows.name), logits.reshape(-1, VOCAB), rtol=rtol, atol=rtol / 10)
    assert float(s.value("loss")) == pytest.approx(loss, rel=rtol)
    params = s.model.parameters
    checked = 0
    for name, want in grads.items():
        key = prefix + name
        if key not in params:
            continue
        got = s.grad(key)
        transposed = s.grad(f"{key}.T") if f"{key}.T" in params else None  # the ONNX head's own copy of it
        if transposed is not None:
            got = got + transposed.T
        np.testing.assert_allclose(got, want, rtol=rtol * 10, atol=rtol, err_msg=key)
        checked += 1
    assert checked >= len(grads) - 1  # every weight (GPT-2 ties its head to the embedding: one name in the file)


@pytest.mark.parametrize("kind", ["pt2", pytest.param("onnx", marks=pytest.mark.slow)])
def test_gpt2_with_dynamic_batch_and_sequence_matches_torch_at_the_example_and_other_sizes(
        gpt2: tuple[Any, Path], kind: str) -> None:
    lm, folder = gpt2
    path = folder / "gpt2_dyn.pt2" if kind == "pt2" else _gpt2_dynamo_onnx(lm, folder)
    opened = open_model(path)
    assert opened.unsupported_ops == {}  # arange, diff, view of symbolic sizes map as static ones
    assert opened.graph.inputs[0].shape == ((2, 8) if kind == "pt2" else (1, 1))
    rng = np.random.default_rng(1)
    prefix = "" if kind == "pt2" else "m."
    # the dynamo exporter stores its own constants (attention's scale, GELU's 0.044715) in float32
    rtol = 1e-9 if kind == "pt2" else 1e-6
    for shape in ((2, 8), (3, 5)):
        ids, labels = rng.integers(0, VOCAB, shape), rng.integers(0, VOCAB, shape)
        s = open_session(path, data={"input_ids": ids, "y": labels}, loss="cross_entropy", dtype="float64")
        assert s.graph["input_ids"].shape == shape and s.model.unsupported_ops == {}
        assert not any("pass --data" in w for w in s.model.warnings)
        _check_gpt2(s, lm, ids, labels, prefix, rtol)


def test_new_data_of_other_sizes_reads_the_file_again_and_keeps_the_trained_weights(gpt2: tuple[Any, Path]) -> None:
    folder = gpt2[1]
    s = open_session(folder / "gpt2_dyn.pt2", loss="none", dtype="float64")
    assert s.graph["input_ids"].shape == (2, 8)
    trained = s.parameters_numpy()["transformer.h.0.mlp.c_fc.weight"] + 0.5
    s.set_params({"transformer.h.0.mlp.c_fc.weight": trained})
    ids = np.random.default_rng(2).integers(0, VOCAB, (3, 5))
    s.set_batch({"input_ids": ids})  # File ▸ Load data
    assert s.graph["input_ids"].shape == (3, 5) and "s72 = 3" in s.model.description
    np.testing.assert_array_equal(s.parameters_numpy()["transformer.h.0.mlp.c_fc.weight"], trained)
    s.run_to_end()
    assert s.value(s.prediction_node.name).shape == (3, 5, VOCAB)


# -- a small CNN: dynamic batch (three exporters), dynamic image size; an LSTM's dynamic sequence length ----------
class _CNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x: Any) -> Any:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


class _Tagger(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.rnn, self.fc = torch.nn.Embedding(20, 6), torch.nn.LSTM(6, 5, batch_first=True), \
            torch.nn.Linear(5, 3)

    def forward(self, ids: Any) -> Any:
        return self.fc(self.rnn(self.emb(ids))[0][:, -1])


def _cnn_file(kind: str, folder: Path, cnn: Any, dims: dict[int, Any]) -> Path:
    x = torch.randn(2, 3, 8, 8)
    if kind == "pt2":
        path = folder / f"cnn_{len(dims)}.pt2"
        torch.export.save(torch.export.export(cnn, (x,), dynamic_shapes={"x": dims}), str(path))
        return path
    if kind == "dynamo":
        _needs_dynamo_onnx()
        return _export_onnx(cnn, (x,), folder / f"cnn_{len(dims)}_dynamo.onnx", input_names=["x"],
                            output_names=["logits"], dynamic_shapes={"x": dims}, dynamo=True)
    return _export_onnx(cnn, (x,), folder / "cnn_ts.onnx", input_names=["x"], output_names=["logits"],
                        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)


@pytest.mark.parametrize("kind", ["pt2", "torchscript", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_a_cnn_with_a_dynamic_batch_runs_a_batch_of_3_and_matches_torch(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cnn = _CNN().eval()
    path = _cnn_file(kind, tmp_path, cnn, {0: torch.export.Dim("batch", min=1, max=64)})
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8))
    s = open_session(path, data={"x": x}, loss="none", dtype="float64")
    s.run_to_end()
    with torch.no_grad():
        want = cnn.double()(torch.tensor(x)).numpy()
    # float32 weights either way; the TorchScript exporter folds the batch norm into them, in float32
    np.testing.assert_allclose(s.value(s.prediction_node.name), want, rtol=1e-5 if kind != "pt2" else 1e-10,
                               atol=1e-6 if kind != "pt2" else 1e-12)
    # no word about sizes; both ONNX exporters fold the batch norm into the convolution, which is said
    assert s.graph["x"].shape == (3, 3, 8, 8)
    assert [w for w in s.model.warnings if "folded into the convolution" not in w and "folds the batch norm" not in w] \
        == []
    assert len(s.model.warnings) == (kind != "pt2")


@pytest.mark.parametrize("kind", ["pt2", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_a_dynamic_image_size_follows_the_data_and_the_channels_stay(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cnn = _CNN().eval()
    dims = {0: torch.export.Dim("batch", min=1, max=64), 2: torch.export.Dim("h", min=4, max=64),
            3: torch.export.Dim("w", min=4, max=64)}
    path = _cnn_file(kind, tmp_path, cnn, dims)
    x = np.random.default_rng(0).standard_normal((3, 3, 12, 10))
    s = open_session(path, data={"x": x}, loss="none", dtype="float64")
    s.run_to_end()
    with torch.no_grad():
        want = cnn.double()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(s.value(s.prediction_node.name), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeError, match=r"input 'x': expected shape \(3, 3, 12, 10\), got \(3, 4, 12, 10\)"):
        open_session(path, data={"x": np.zeros((3, 4, 12, 10))}, loss="none")  # the file fixes the channels


def test_an_lstm_with_a_dynamic_sequence_length_takes_other_lengths(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tagger = _Tagger().eval()
    path = _export_onnx(tagger, (torch.randint(0, 20, (2, 7)),), tmp_path / "lstm.onnx", input_names=["ids"],
                        output_names=["y"], dynamic_axes={"ids": {0: "batch", 1: "seq"}, "y": {0: "batch"}},
                        dynamo=False)
    for shape in ((3, 5), (1, 11)):
        ids = np.random.default_rng(0).integers(0, 20, shape)
        s = open_session(path, data={"ids": ids}, loss="none", dtype="float64")
        s.run_to_end()
        with torch.no_grad():
            want = tagger(torch.tensor(ids)).numpy()
        np.testing.assert_allclose(s.value(s.prediction_node.name), want, rtol=1e-5, atol=1e-6)


def test_the_command_says_which_symbols_got_which_sizes_and_not_to_pass_data_when_it_was(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    path = _export_onnx(_Tagger().eval(), (torch.randint(0, 20, (2, 7)),), tmp_path / "lstm.onnx",
                        input_names=["ids"], output_names=["y"],
                        dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "y": {0: "batch"}}, dynamo=False)
    assert main(["trace", str(path), "--out", str(tmp_path / "a.npz")]) == 0
    err = capsys.readouterr().err
    assert "batch = 1, tokens = 1" in err and "pass --data" in err
    data = tmp_path / "ids.npz"
    np.savez(data, ids=np.random.default_rng(3).integers(0, 20, (4, 9)))
    assert main(["trace", str(path), "--data", str(data), "--out", str(tmp_path / "b.npz")]) == 0
    assert "symbolic" not in capsys.readouterr().err
    assert np.load(tmp_path / "b.npz")["value/ids"].shape == (4, 9)


# -- refusals -----------------------------------------------------------------------------------------------
class _Pair(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, a: Any, b: Any) -> Any:
        return self.fc(a * b)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pair")
    a = torch.randn(2, 4)
    batch = torch.export.Dim("batch", min=1, max=16)
    torch.export.save(torch.export.export(_Pair(), (a, a), dynamic_shapes={"a": {0: batch}, "b": {0: batch}}),
                      str(folder / "pair.pt2"))
    _export_onnx(_Pair(), (a, a), folder / "pair.onnx", input_names=["a", "b"],
                 dynamic_axes={"a": {0: "batch"}, "b": {0: "batch"}}, dynamo=False)
    return folder


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_data_that_disagrees_on_a_shared_symbol_is_refused_in_one_line(pair: Path, suffix: str) -> None:
    path = pair / f"pair{suffix}"
    agree = open_session(path, data={"a": np.ones((3, 4)), "b": np.ones((3, 4))}, loss="none")
    agree.run_to_end()
    assert agree.value(agree.prediction_node.name).shape == (3, 2)
    with pytest.raises(ShapeError) as caught:
        open_session(path, data={"a": np.ones((3, 4)), "b": np.ones((5, 4))}, loss="none")
    text = str(caught.value)
    assert "\n" not in text and "input 'b' dimension 0" in text and "input 'a' dimension 0" in text
    assert "share the dynamic dimension" in text and "5 and 3" in text


def test_a_size_outside_the_exported_range_is_refused_in_one_line(pair: Path) -> None:
    with pytest.raises(ShapeError, match=r"^input 'a' dimension 0 \(s\d+\) is 40; the program was exported for "
                                         r"1\.\.16 there$"):
        open_session(pair / "pair.pt2", data={"a": np.ones((40, 4)), "b": np.ones((40, 4))}, loss="none")


def test_a_symbol_the_file_gives_no_size_for_is_refused_by_name_unless_the_data_gives_it(
        pair: Path, tmp_path: Path) -> None:
    path = tmp_path / "unhinted.pt2"
    with zipfile.ZipFile(pair / "pair.pt2") as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if "sample_inputs" in info.filename:
                continue
            if info.filename.endswith("models/model.json"):  # no hint: a size the file does not record
                program = json.loads(data)
                for value in program["graph_module"]["graph"]["tensor_values"].values():
                    for size in value["sizes"]:
                        if "as_expr" in size:
                            size["as_expr"]["hint"] = None
                data = json.dumps(program).encode()
            target.writestr(info, data)
    with pytest.raises(ModelFormatError) as caught:
        open_model(path)
    text = str(caught.value)
    assert "\n" not in text and "input 'a' dimension 0 is dynamic" in text and "--data" in text \
        and "static size" in text
    s = open_session(path, data={"a": np.ones((3, 4)), "b": np.ones((3, 4))}, loss="none")
    s.run_to_end()
    assert s.value(s.prediction_node.name).shape == (3, 2)


def test_a_state_dict_on_a_dynamic_architecture_keeps_its_weights_at_other_sizes(tmp_path: Path) -> None:
    """`--arch file.pt2` (a dynamic batch) filled from a state dict, then data of another batch, and mini-batches: the
    file read again at those sizes gets the state dict's weights and running statistics again, not the file's."""
    torch.manual_seed(0)
    arch = _cnn_file("pt2", tmp_path, _CNN().eval(), {0: torch.export.Dim("batch", min=1, max=64)})
    trained = _CNN().eval()
    with torch.no_grad():
        for buffer in trained.buffers():
            if buffer.dtype.is_floating_point:
                buffer.uniform_(0.5, 1.5)  # running statistics unlike the file's
    weights = tmp_path / "trained.pt"
    torch.save(trained.state_dict(), weights)
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8))
    s = open_session(weights, arch=arch, data={"x": x[:2]}, loss="none", dtype="float64")
    s.set_batch({"x": x})  # File ▸ Load data: another batch, the file read again
    s.run_to_end()
    with torch.no_grad():
        want = trained.double()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(s.value(s.prediction_node.name), want, rtol=1e-10, atol=1e-12)


def _named_y_file(path: Path, weight_named_y: bool) -> Path:
    """A dynamic-batch ONNX file with `y` in it, as ONNX's examples name things: a weight (initializer) named y, or a
    second output named y."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32),
                                "y" if weight_named_y else "W")
    nodes = [helper.make_node("MatMul", ["x", w.name], ["h"]), helper.make_node("Sigmoid", ["h"], ["z"]),
             helper.make_node("Tanh", ["h"], ["t" if weight_named_y else "y"])]
    outputs = ["z", "t" if weight_named_y else "y"]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", 3]) for o in outputs], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("weight_named_y", [True, False], ids=["weight-y", "output-y"])
def test_a_node_named_y_survives_new_data_and_mini_batches(weight_named_y: bool, tmp_path: Path) -> None:
    """The session renames a model's `y` (the target's name) to y_model; a file read again at other sizes (File ▸
    Load data, a mini-batch) is renamed so too, and the output the user chose stays chosen ('no output named
    y_model' and 'a parameter named y' stopped both before)."""
    path = _named_y_file(tmp_path / "named_y.onnx", weight_named_y)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    s = open_session(path, data={"x": x, "y": y}, loss="mse", dtype="float64", output=1)
    s.set_batch({"x": x[:3], "y": y[:3]})
    assert s.graph["x"].shape == (3, 4)
    s.set_batch({"x": x, "y": y})
    before = {k: np.array(v) for k, v in s.parameters_numpy().items()}
    s.train(epochs=1, optimizer="sgd", lr=0.1, batch_size=2)
    assert s.prediction_node.op.name == "tanh"  # still the output chosen: the second
    weight = next(iter(before))
    assert not np.allclose(s.parameters_numpy()[weight], before[weight])
