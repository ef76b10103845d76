"""Readers: models built and exported here (torch.export .pt2, ONNX), opened, traced and trained.

The truth is PyTorch: `propscope trace` on the exported file must give the loss and every parameter
gradient that autograd gives on the same data (float64, both backends), and training with each
optimizer must follow torch.optim's loss history. State dicts open against an architecture, with a
report; unsupported ops open and stop stepping with a message.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.cli import main
from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError, UnsupportedOpError
from propscope.graph.model import example_batch
from propscope.graph.readers import load_target, open_model, save_model

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
pytestmark = pytest.mark.torch
HAS_ONNX = importlib.util.find_spec("onnx") is not None
HAS_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is not None
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")


# -- the models --------------------------------------------------------------------------------------
class MLP(nn.Module):
    """Several activations, a scalar multiply and subtract (constants inline in the program)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 6), nn.Linear(6, 3)

    def forward(self, x: Any) -> Any:
        h = torch.tanh(self.fc1(x))
        h = F.gelu(self.fc2(h))
        h = F.leaky_relu(F.silu(self.fc3(h)), 0.1)
        return self.out(torch.sigmoid(h) * 2 - 1)


class CNN(nn.Module):
    """conv → batch norm (eval) → ReLU → max-pool → conv → ReLU → avg-pool → flatten → dropout (eval) → dense."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.drop, self.fc = nn.Conv2d(4, 6, 3), nn.Dropout(0.3), nn.Linear(24, 5)

    def forward(self, x: Any) -> Any:
        x = F.max_pool2d(F.relu(self.bn(self.conv1(x))), 2)
        x = F.avg_pool2d(torch.relu(self.conv2(x)), 1)
        return self.fc(self.drop(torch.flatten(x, 1)))


class GRUClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru, self.fc = nn.GRU(3, 5, batch_first=True), nn.Linear(5, 2)

    def forward(self, x: Any) -> Any:
        out, _ = self.gru(x)
        return self.fc(out[:, -1])


class AttentionBlock(nn.Module):
    """Multi-head self-attention, a residual connection and layer norm, then a head on the mean token."""

    def __init__(self) -> None:
        super().__init__()
        self.attn, self.ln = nn.MultiheadAttention(8, 2, batch_first=True), nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Any) -> Any:
        a, _ = self.attn(x, x, x, need_weights=False)
        return self.head(self.ln(x + a)).mean(1)


# name: (class, input shape, classes)
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "mlp": (MLP, (6, 4), 3),
    "cnn": (CNN, (4, 1, 8, 8), 5),
    "gru": (GRUClassifier, (4, 6, 3), 2),
    "attention": (AttentionBlock, (3, 5, 8), 3),
}


def _build(name: str) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """The model in eval mode with every parameter and statistic nudged off its default (so none is tied)."""
    cls, shape, classes = MODELS[name]
    torch.manual_seed(sum(map(ord, name)))
    model = cls().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for b_name, b in model.named_buffers():
            if b_name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif b_name.endswith("running_var"):
                b.copy_(1.0 + 0.2 * torch.rand_like(b))
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32)
    y = np.arange(shape[0]) % classes
    return model, x, y


def _export_pt2(model: nn.Module, x: np.ndarray, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nn.GRU's flat weights warn during export; harmless
        torch.export.save(torch.export.export(model, (torch.from_numpy(x),)), str(path))
    return path


def _export_onnx(model: nn.Module, x: np.ndarray, path: Path, dynamo: bool = False) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            if dynamo:
                torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=["x"], dynamo=True,
                                  optimize=False, verbose=False)
            else:  # the TorchScript exporter needs no onnxscript; constant folding off keeps parameter names
                torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=["x"], dynamo=False,
                                  do_constant_folding=False)
        finally:
            logging.disable(logging.NOTSET)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[Path, nn.Module, Any]]:
    """Every model written once per format: {(model, format): (file, torch model, (x, y))}."""
    folder = tmp_path_factory.mktemp("exported")
    out = {}
    for name in MODELS:
        model, x, y = _build(name)
        out[(name, "pt2")] = (_export_pt2(model, x, folder / f"{name}.pt2"), model, (x, y))
        if HAS_ONNX:
            out[(name, "onnx")] = (_export_onnx(model, x, folder / f"{name}.onnx"), model, (x, y))
    return out


def _torch_reference(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    m = copy.deepcopy(model).double()
    loss = F.cross_entropy(m(torch.from_numpy(x).double()), torch.from_numpy(y))
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in m.named_parameters()}


FORMATS = ["pt2", pytest.param("onnx", marks=pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed"))]


# -- trace: loss and every gradient as autograd -----------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(MODELS))
def test_trace_matches_autograd(name: str, fmt: str, backend: str, exported: dict, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    path, model, (x, y) = exported[(name, fmt)]
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=y)
    out = tmp_path / "trace.npz"
    code = main(["trace", str(path), "--data", str(data), "--loss", "cross_entropy", "--dtype", "float64",
                 "--backend", backend, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    loss, grads = _torch_reference(model, x, y)
    trace = np.load(out)
    assert abs(float(trace["loss"]) - loss) <= 1e-6 * max(1.0, abs(loss))
    for param, grad in grads.items():
        key = f"grad/{param}"
        assert key in trace.files, f"no gradient for {param}; traced: {[k for k in trace.files if 'grad/' in k]}"
        np.testing.assert_allclose(trace[key], grad, rtol=1e-6, atol=1e-9, err_msg=param)


@pytest.mark.skipif(not (HAS_ONNX and HAS_ONNXSCRIPT), reason="the dynamo ONNX exporter needs onnxscript")
@pytest.mark.parametrize("name", ["cnn", "gru", "attention"])
def test_dynamo_onnx_export_matches_autograd(name: str, tmp_path: Path) -> None:
    """torch's default ONNX exporter: weights as external data beside the file, other op patterns."""
    model, x, y = _build(name)
    path = _export_onnx(model, x, tmp_path / f"{name}.onnx", dynamo=True)
    s = open_session(path, dtype="float64", data={"x": x, "y": y}, loss="cross_entropy")
    s.run_to_end()
    loss, grads = _torch_reference(model, x, y)
    assert abs(float(s.value("loss")) - loss) < 1e-6
    for param, grad in grads.items():
        np.testing.assert_allclose(s.grad(param), grad, rtol=1e-6, atol=1e-9, err_msg=param)


# -- more layers: stacked bidirectional LSTM, ReLU RNN, grouped and 'same' convolutions, causal attention,
#    masks from buffers, a whole TransformerEncoderLayer (fresh init: the ONNX exporter ties its equal norms) ---
class StackedLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm, self.fc = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True), nn.Linear(8, 2)

    def forward(self, x: Any) -> Any:
        out, (h, _) = self.lstm(x)
        return self.fc(out[:, -1]) + h.sum(0).sum(-1, keepdim=True)


class ReluRNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.fc = nn.RNN(3, 4, nonlinearity="relu", batch_first=True), nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        out, _ = self.rnn(x)
        return self.fc(out.mean(1))


class Convs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
        self.c2, self.ln = nn.Conv2d(8, 8, 3, padding="same", bias=False), nn.LayerNorm(8, elementwise_affine=False)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: Any) -> Any:
        y = F.relu(self.c1(x))
        y = y + self.c2(y)
        return self.fc(self.ln(F.adaptive_avg_pool2d(y, 1).flatten(1)))


class CausalAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(8, 24), nn.Linear(8, 3)

    def forward(self, x: Any) -> Any:
        q, k, v = (t.view(2, 5, 2, 4).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 5, 8)
        return self.proj(a).mean(1)


class BufferMask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Linear(5, 5)
        self.register_buffer("allowed", torch.tril(torch.ones(5, 5)).bool())

    def forward(self, x: Any) -> Any:
        scores = self.score(x).masked_fill(~self.allowed, float("-inf"))
        return torch.log_softmax(scores.softmax(-1) @ x, -1)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: Any) -> Any:
        return self.fc(self.enc(x).mean(1))


MORE = {"stacked_lstm": (StackedLSTM, (3, 4, 3), 2), "relu_rnn": (ReluRNN, (4, 3, 3), 2),
        "convs": (Convs, (2, 4, 8, 8), 3), "causal": (CausalAttention, (2, 5, 8), 3),
        "buffer_mask": (BufferMask, (5, 5), 5), "encoder": (Encoder, (2, 5, 8), 3)}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(MORE))
def test_more_layers_match_autograd(name: str, fmt: str, tmp_path: Path) -> None:
    cls, shape, classes = MORE[name]
    torch.manual_seed(1)
    model = cls().eval()
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    y = np.arange(shape[0]) % classes
    path = (_export_pt2 if fmt == "pt2" else _export_onnx)(model, x, tmp_path / f"{name}.{fmt}")
    s = open_session(path, dtype="float64", data={"x": x, "y": y}, loss="cross_entropy")
    s.run_to_end()
    assert s.trace.first_nonfinite is None, "masks must stay finite"
    loss, grads = _torch_reference(model, x, y)
    assert abs(float(s.value("loss")) - loss) < 1e-9
    for param, grad in grads.items():
        np.testing.assert_allclose(s.grad(param), grad, rtol=1e-7, atol=1e-12, err_msg=param)


# -- training follows torch.optim -----------------------------------------------------------------------
def _torch_history(model: nn.Module, x: np.ndarray, y: np.ndarray, optimizer: str, lr: float,
                   epochs: int) -> list[float]:
    m = copy.deepcopy(model).double()
    params = list(m.parameters())
    opt = {"sgd": lambda: torch.optim.SGD(params, lr=lr), "momentum": lambda: torch.optim.SGD(params, lr, 0.9),
           "rmsprop": lambda: torch.optim.RMSprop(params, lr=lr), "adam": lambda: torch.optim.Adam(params, lr=lr),
           "adamw": lambda: torch.optim.AdamW(params, lr=lr)}[optimizer]()
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y)
    history = []
    for _ in range(epochs):
        opt.zero_grad()
        loss = F.cross_entropy(m(xt), yt)
        history.append(float(loss.detach()))
        loss.backward()
        opt.step()
    return history


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(MODELS))
def test_training_follows_torch_optim(name: str, fmt: str, exported: dict) -> None:
    path, model, (x, y) = exported[(name, fmt)]
    epochs, lr = 8, 0.05
    for optimizer in OPTIMIZERS:
        s = open_session(path, dtype="float64", data={"x": x, "y": y}, loss="cross_entropy")
        history = s.train(epochs, optimizer, lr)
        want = _torch_history(model, x, y, optimizer, lr, epochs)
        np.testing.assert_allclose(history.loss, want, rtol=1e-7, atol=1e-10, err_msg=f"{name} {fmt} {optimizer}")


def test_training_on_the_torch_backend_follows_torch_optim(exported: dict) -> None:
    path, model, (x, y) = exported[("cnn", "pt2")]
    s = open_session(path, backend="torch", dtype="float64", data={"x": x, "y": y}, loss="cross_entropy")
    history = s.train(6, "adam", 0.05)
    np.testing.assert_allclose(history.loss, _torch_history(model, x, y, "adam", 0.05, 6), rtol=1e-7)


# -- what the reader builds ------------------------------------------------------------------------------
def test_pt2_keeps_state_dict_names_and_module_paths(exported: dict) -> None:
    path, model, _ = exported[("cnn", "pt2")]
    m = open_model(path)
    assert {n.name for n in m.graph.parameters} == {k for k, _ in model.named_parameters()}
    assert {n.name for n in m.graph.leaves if n.op.name == "constant"} >= {"bn.running_mean", "bn.running_var"}
    modules = {n.op.name: n.module for n in m.graph.ops}
    assert modules["conv2d"] in ("conv1", "conv2") and modules["batch_norm"] == "bn" and modules["linear"] == "fc"
    assert m.batch["x"].shape == (4, 1, 8, 8), "the program's example input is the default batch"
    assert not m.warnings and not m.unsupported_ops


def test_recurrent_layer_is_unrolled_into_cells_folded_under_its_module(exported: dict) -> None:
    for fmt in ("pt2", "onnx") if HAS_ONNX else ("pt2",):
        g = open_model(exported[("gru", fmt)][0]).graph
        cells = [n for n in g.ops if n.op.name == "gru_cell"]
        assert [n.meta["time"] for n in cells] == list(range(6)), fmt
        assert {n.module for n in cells} == {"gru"}
        names = {p.name for p in g.parameters}
        assert {"gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0"} <= names, fmt


def test_attention_is_lowered_to_steppable_products(exported: dict) -> None:
    g = open_model(exported[("attention", "pt2")][0]).graph
    inside = [n for n in g.ops if n.module == "attn.attention"]
    assert [n.op.name for n in inside] == ["transpose", "matmul", "mul", "softmax", "matmul"]
    assert any(n.op.name == "layer_norm" and n.module == "ln" for n in g.ops)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")
def test_onnx_shape_plumbing_is_folded(exported: dict) -> None:
    """The exporter's Shape/Gather/Unsqueeze/Concat/Expand/Constant chains leave no node behind."""
    import onnx

    path = exported[("gru", "onnx")][0]
    plumbing = {"Shape", "Gather", "Unsqueeze", "Concat", "Expand", "Constant", "ConstantOfShape", "Cast"}
    assert plumbing & {n.op_type for n in onnx.load(str(path)).graph.node}, "the export should have plumbing"
    g = open_model(path).graph
    assert {n.op.name for n in g.ops} <= {"select", "gru_cell", "reshape", "concat", "transpose", "linear"}
    assert not [n for n in g.leaves if n.op.name == "constant" and n.shape == (3,)], "no shape vector survives"
    attention = open_model(exported[("attention", "onnx")][0]).graph
    assert {n.module for n in attention.ops} >= {"attn", "ln", "head"}


def test_a_batch_of_another_size_fits_where_the_batch_axis_passes_through(exported: dict) -> None:
    path, model, _ = exported[("cnn", "pt2")]
    x = np.random.default_rng(1).standard_normal((9, 1, 8, 8))
    s = open_session(path, dtype="float64", data={"x": x}, loss="none")
    s.run_to_end()
    want = copy.deepcopy(model).double()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(s.value(s.prediction_node.name), want, rtol=1e-10)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")
def test_onnx_symbolic_batch_opens_as_one_and_takes_any_batch(tmp_path: Path) -> None:
    model, x, _ = _build("cnn")
    path = tmp_path / "dynamic.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=["x"], output_names=["out"],
                          dynamic_axes={"x": {0: "batch"}, "out": {0: "batch"}}, dynamo=False,
                          do_constant_folding=False)
    s = open_session(path)  # no data: a generated batch of one
    assert s.batch["x"].shape == (1, 1, 8, 8) and "symbolic" in s.model.warnings[0]
    s.run_to_end()
    big = np.random.default_rng(5).standard_normal((7, 1, 8, 8))
    s = open_session(path, dtype="float64", data={"x": big}, loss="none")
    s.run_to_end()
    want = copy.deepcopy(model).double()(torch.from_numpy(big)).detach().numpy()
    np.testing.assert_allclose(s.value(s.prediction_node.name), want, rtol=1e-10)


# -- data and losses for a loaded model ------------------------------------------------------------------
def test_without_data_a_seeded_batch_of_the_declared_shapes_is_generated(exported: dict) -> None:
    path = exported[("mlp", "pt2")][0]
    model = open_model(path)
    model.batch = {}
    for loss, y_kind in (("cross_entropy", "i"), ("mse", "f"), ("bce", "f")):
        batch = example_batch(model.graph, seed=3, loss=loss)
        assert batch["x"].shape == (6, 4) and batch["y"].dtype.kind == y_kind
        np.testing.assert_array_equal(batch["x"], example_batch(model.graph, seed=3)["x"])
    assert set(example_batch(model.graph, seed=0)) == {"x"}, "no target without a loss"
    bce = example_batch(model.graph, seed=0, loss="bce")["y"]
    assert set(np.unique(bce)) <= {0.0, 1.0}


def test_loss_none_runs_forward_only_and_a_loss_gets_a_generated_target(exported: dict,
                                                                         capsys: pytest.CaptureFixture[str],
                                                                         tmp_path: Path) -> None:
    path = exported[("gru", "pt2")][0]
    s = open_session(path)
    assert s.loss_node is None and len(s.steps) == s.n_forward
    s = open_session(path, loss="cross_entropy", seed=4)
    s.run_to_end()
    assert s.batch["y"].shape == (4,) and np.isfinite(s.value("loss"))
    assert main(["trace", str(path), "--loss", "none", "--out", str(tmp_path / "t.npz")]) == 0
    assert "loss" not in np.load(tmp_path / "t.npz").files


def test_embedding_inputs_get_whole_ids_in_range(tmp_path: Path) -> None:
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.fc = nn.Embedding(7, 4), nn.Linear(4, 2)

        def forward(self, ids: Any) -> Any:
            return self.fc(self.embed(ids)).mean(1)

    model = Tokens()
    ids = torch.randint(0, 7, (3, 5))
    path = tmp_path / "tokens.pt2"
    torch.export.save(torch.export.export(model, (ids,)), str(path))
    g = open_model(path).graph
    batch = example_batch(g, seed=1, loss="cross_entropy")
    assert batch["ids"].dtype.kind == "i" and batch["ids"].min() >= 0 and batch["ids"].max() < 7
    s = open_session(path, dtype="float64", data={"ids": ids.numpy(), "y": np.array([0, 1, 0])}, loss="cross_entropy")
    s.run_to_end()
    m = copy.deepcopy(model).double()
    F.cross_entropy(m(ids), torch.tensor([0, 1, 0])).backward()
    np.testing.assert_allclose(s.grad("embed.weight"), m.embed.weight.grad.numpy(), atol=1e-12)


# -- unsupported ops -----------------------------------------------------------------------------------
class Unusual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        return self.out(torch.lgamma(torch.i0(self.fc(x))))  # Bessel and log-gamma: outside the catalog


@pytest.fixture(scope="module")
def unusual(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("unusual") / "unusual.pt2"
    torch.export.save(torch.export.export(Unusual(), (torch.randn(5, 3),)), str(path))
    return path


def test_unsupported_ops_open_and_are_listed_in_one_message(unusual: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = open_model(unusual)
    assert model.unsupported_ops == {"aten.i0": 1, "aten.lgamma": 1}
    assert len(model.warnings) == 1 and "aten.i0, aten.lgamma" in model.warnings[0]
    assert [n.op.name for n in model.graph.ops] == ["linear", "unsupported", "unsupported", "linear"]
    assert main(["inspect", str(unusual)]) == 0
    assert "aten.i0, aten.lgamma" in capsys.readouterr().out


def test_stepping_stops_before_the_first_unsupported_node(unusual: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    s = open_session(unusual, loss="mse")
    assert s.step() is not None and s.cursor == 1
    with pytest.raises(UnsupportedOpError, match=r"node 'i0': op aten\.i0 is not supported"):
        s.step()
    assert s.cursor == 1, "the cursor stays before the unsupported node"
    with pytest.raises(UnsupportedOpError, match=r"aten\.i0"):
        s.train(2, "sgd", 0.1)
    assert main(["trace", str(unusual), "--out", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "aten.i0 is not supported" in err
    assert main(["train", str(unusual), "--loss", "mse", "--epochs", "1"]) == 2
    assert "aten.i0" in capsys.readouterr().err


def test_a_model_with_unsupported_nodes_saves_and_reopens(unusual: Path, tmp_path: Path) -> None:
    again = open_model(save_model(open_model(unusual), tmp_path / "u.propscope"))
    assert again.unsupported_ops == {"aten.i0": 1, "aten.lgamma": 1}


# -- state dicts --------------------------------------------------------------------------------------
def test_state_dict_needs_an_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.pt"
    torch.save(MLP().state_dict(), path)
    assert main(["trace", str(path), "--out", str(tmp_path / "t.npz")]) == 2
    assert "--arch" in capsys.readouterr().err
    with pytest.raises(ModelFormatError, match="--arch"):
        load_target(path)
    assert main(["inspect", str(path)]) == 0  # inspect lists its tensors instead
    assert "weights only (--arch names the architecture they fill)" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_state_dict_weights_fill_the_architecture(suffix: str, exported: dict, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The .pt2 was exported from other weights; the state dict's weights must give torch's gradients."""
    from propscope.graph.readers.state_dict import write_safetensors

    arch = exported[("mlp", "pt2")][0]
    trained, x, y = _build("mlp")
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(-1.5)
    weights = tmp_path / f"w{suffix}"
    state = trained.state_dict()
    if suffix == ".safetensors":
        write_safetensors({k: v.numpy() for k, v in state.items()}, weights)
    elif suffix == ".pth":  # a training checkpoint: nested, with DataParallel's prefix
        torch.save({"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in state.items()}}, weights)
    else:
        torch.save(state, weights)
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=y)
    out = tmp_path / "t.npz"
    assert main(["trace", str(weights), "--arch", str(arch), "--data", str(data), "--loss", "cross_entropy",
                 "--dtype", "float64", "--out", str(out)]) == 0
    loss, grads = _torch_reference(trained, x, y)
    trace = np.load(out)
    assert abs(float(trace["loss"]) - loss) < 1e-9
    for k, g in grads.items():
        np.testing.assert_allclose(trace[f"grad/{k}"], g, rtol=1e-7, atol=1e-12)
    capsys.readouterr()
    assert main(["inspect", str(weights), "--arch", str(arch), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)["warnings"]  # a clean match says nothing, a stripped prefix says so
    assert all("8 matched" in w and "missing" not in w and "wrong shape" not in w for w in said), said


def test_state_dict_report_names_missing_unexpected_and_wrong_shapes(exported: dict) -> None:
    from propscope.graph.readers.state_dict import apply_state_dict

    model = open_model(exported[("mlp", "pt2")][0])
    tensors = {k: np.asarray(v) for k, v in model.parameters.items()}
    tensors.pop("fc3.bias")
    tensors["fc1.weight"] = np.zeros((2, 2))
    tensors["extra.weight"] = np.ones(3)
    new, report = apply_state_dict(model, tensors, "w.pt")
    assert report.missing == ["fc3.bias"] and report.unexpected == ["extra.weight"]
    assert report.wrong_shape == [("fc1.weight", (8, 4), (2, 2))]
    assert len(report.matched) == 6 and not report.ok
    np.testing.assert_array_equal(new.arrays["fc1.weight"], model.arrays["fc1.weight"])  # a wrong shape is ignored
    assert "1 missing" in report.summary() and report.summary() in new.warnings


def test_state_dict_against_a_built_in_example(tmp_path: Path) -> None:
    """The cnn example names its layers as PyTorch would: a torch state dict of that shape loads into it."""
    example = load_target("cnn")
    state = {n.name: torch.full(n.shape, 0.5) for n in example.graph.parameters}
    torch.save(state, tmp_path / "cnn.pt")
    model = load_target(tmp_path / "cnn.pt", arch="cnn")
    assert all(np.all(model.arrays[n.name] == 0.5) for n in model.graph.parameters)
    assert "4 matched" in model.warnings[-1]  # and the example's constants kept
    with pytest.raises(ModelFormatError, match="is it the right architecture"):
        load_target(tmp_path / "cnn.pt", arch="xor")


def test_arch_is_refused_for_files_that_carry_their_own(exported: dict) -> None:
    with pytest.raises(ModelFormatError, match="its own architecture"):
        load_target(exported[("mlp", "pt2")][0], arch="xor")


def test_safetensors_round_trip_with_bfloat16_and_ints(tmp_path: Path) -> None:
    from propscope.graph.readers.state_dict import read_tensors, write_safetensors

    arrays = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    got = read_tensors(write_safetensors(arrays, tmp_path / "t.safetensors"))
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)
    bf16 = np.array([1.5, -2.0], dtype=np.float32).view(np.uint32) >> 16
    header = b'{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}'
    (tmp_path / "bf.safetensors").write_bytes(len(header).to_bytes(8, "little") + header +
                                             bf16.astype("<u2").tobytes())
    np.testing.assert_array_equal(read_tensors(tmp_path / "bf.safetensors")["w"], [1.5, -2.0])


def test_weights_are_read_once_and_each_tensor_is_its_own(tmp_path: Path) -> None:
    """A .pt2's weights become arrays without a second copy (a view of the member read once, writable), and two
    tensors on one storage (buffers sliced from one tensor) are still independent arrays with their own values;
    safetensors and ONNX external data likewise."""

    class Sliced(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            base = torch.arange(8.0)
            self.register_buffer("a", base[:4])
            self.register_buffer("b", base[4:])
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x: Any) -> Any:
            return self.fc(x) + self.a - self.b

    module = Sliced().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(module, (torch.randn(2, 4),)), str(tmp_path / "sliced.pt2"))
    model = open_model(tmp_path / "sliced.pt2")
    np.testing.assert_array_equal(model.arrays["a"], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(model.arrays["b"], [4.0, 5.0, 6.0, 7.0])
    assert not np.shares_memory(model.arrays["a"], model.arrays["b"])
    weight = model.arrays["fc.weight"]
    assert weight.flags.writeable and weight.flags.c_contiguous
    np.testing.assert_array_equal(weight, module.fc.weight.detach().numpy())
    model.arrays["a"][0] = 100.0  # an in-place edit of one tensor touches no other
    assert model.arrays["b"][0] == 4.0

    save_file = pytest.importorskip("safetensors.torch").save_file
    save_file({"w": torch.arange(6.0).reshape(2, 3), "v": torch.ones(3)}, str(tmp_path / "w.safetensors"))
    from propscope.graph.readers.state_dict import read_tensors

    tensors = read_tensors(tmp_path / "w.safetensors")
    assert tensors["w"].flags.writeable and tensors["w"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
