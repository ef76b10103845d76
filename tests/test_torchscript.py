"""TorchScript archives (`torch.jit.trace` / `torch.jit.script`, saved) open as a steppable graph from their own code,
read with `ast` and interpreted, never run; hostile or damaged archives are refused in one line.

Each model is traced or scripted once (a module fixture); propscope opens the file with the data's shapes and steps
to the end of the backward pass on the NumPy and the torch backend, which must give torch autograd's loss and every
weight gradient of the original module to 1e-10 relative, in float64. Language models traced from int64 token ids
(transformers' BERT and GPT-2) do so per token; an op propscope does not map is a placeholder, an in-place op on a
slice writes through.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.cli import main
from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import open_model, reading_at

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _transformer() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    return zoo._transformer_encoder()


MODELS: dict[str, tuple[Callable[[], tuple[Any, tuple[np.ndarray, ...], np.ndarray]], str]] = {
    "resnet18.trace": (zoo._vision("resnet18"), "trace"),
    "mobilenet_v2.trace": (zoo._vision("mobilenet_v2"), "trace"),
    "mobilenet_v3_small.trace": (zoo._vision("mobilenet_v3_small"), "trace"),
    "encoder.trace": (_transformer, "trace"),
    "resnet18.script": (zoo._vision("resnet18"), "script"),
    "mobilenet_v2.script": (zoo._vision("mobilenet_v2"), "script"),
}
needs_torchvision = pytest.mark.skipif(not zoo.has_torchvision(), reason="torchvision is not installed")


class Archives:
    """Each model built once and saved as TorchScript on first use, with its batch (inputs and labels)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.built: dict[str, tuple[Any, tuple[np.ndarray, ...], np.ndarray]] = {}

    def file(self, name: str) -> Path:
        path = self.folder / f"{name}.pt"
        if not path.exists():
            build, how = MODELS[name]
            model, inputs, _ = self.built.setdefault(name, build())
            if how == "script":  # in a fresh interpreter: TorchScript's compiled classes live on for the process,
                _script_elsewhere(name, path)  # and the whole suite's earlier scripting can collide with them
                return path
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.jit.trace(model, tuple(torch.from_numpy(a) for a in inputs), check_trace=False).save(str(path))
        return path

    def batch(self, name: str) -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
        self.file(name)
        return self.built[name]


_SCRIPT = """
import sys, warnings
sys.path.insert(0, sys.argv[1])
import torch, zoo
warnings.simplefilter("ignore")
model = zoo._vision(sys.argv[2])()[0]  # the same seeded build as this process's
torch.jit.script(model).save(sys.argv[3])
"""


def _script_elsewhere(name: str, path: Path) -> None:
    """`torch.jit.script` of zoo architecture `name` ("resnet18.script") saved at `path`, by a new Python process."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(Path(__file__).parent), name.split(".")[0], str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    return Archives(tmp_path_factory.mktemp("torchscript"))


def _close(got: Any, want: np.ndarray, what: str, scale: float) -> None:
    assert got is not None, f"no gradient for {what}"
    diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want), initial=0.0))
    err = diff / max(float(np.max(np.abs(want), initial=0.0)), 1e-6 * scale, 1e-12)
    assert err <= 1e-10, f"{what}: relative difference {err:.3g}"


# every archive on NumPy; the torch backend (the same graph, stepped by autograd) on one network of each kind
STEPPED = [(name, "numpy") for name in MODELS] + \
    [(name, "torch") for name in ("resnet18.trace", "resnet18.script", "encoder.trace")]


@pytest.mark.slow  # 4-12 s each: a real network stepped through on NumPy
@pytest.mark.parametrize(("name", "backend"), STEPPED)
def test_steps_with_autograds_numbers(name: str, backend: str, archives: Archives) -> None:
    if "encoder" not in name and not zoo.has_torchvision():
        pytest.skip("torchvision is not installed")
    path = archives.file(name)
    module, inputs, y = archives.batch(name)
    model = open_model(path) if name.endswith("trace") else None  # a traced archive keeps its inputs' shapes
    if model is not None:
        assert not [n for n in model.graph if n.op.name == "unsupported"]
    data = {"x": inputs[0], "y": y}
    s = open_session(path, backend=backend, dtype="float64", data=data, loss="cross_entropy")
    assert "interpreted, never run" in s.model.description
    s.run_to_end()
    loss, grads, _ = zoo.autograd_reference(module, inputs, y)
    got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
    assert abs(got - loss) <= 1e-10 * max(1.0, abs(loss)), f"loss {got} != {loss}"
    params = {n.name for n in s.graph.leaves if n.op.name == "parameter"}
    assert params == set(grads), f"parameters {sorted(params ^ set(grads))[:6]}"
    scale = max(float(np.max(np.abs(g))) for g in grads.values())
    for param, grad in grads.items():
        _close(s.backend.to_numpy(s.grad(param)), grad, param, scale)
    # ops sit in the modules of the tree (`layer1.0.conv1`, `encoder.layers.0.self_attn`), which fold as a .pt2's
    ops = {n.module for n in s.graph.ops}
    assert len(ops) > 5 and any(m.count(".") >= 2 for m in ops), sorted(ops)[:8]


@needs_torchvision
def test_cli_open_and_compare(archives: Archives, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = archives.file("resnet18.script")
    _, inputs, y = archives.batch("resnet18.script")
    np.savez(tmp_path / "batch.npz", x=inputs[0], y=y)
    assert main(["compare", str(path), "--data", str(tmp_path / "batch.npz"), "--dtype", "float64"]) == 0
    assert "nodes agree" in capsys.readouterr().out


@needs_torchvision
def test_scripted_without_data_says_how_to_give_shapes(archives: Archives) -> None:
    with pytest.raises(ModelFormatError, match=r"records no input shape.*--data") as err:
        open_model(archives.file("resnet18.script"))
    assert "\n" not in str(err.value)


@needs_torchvision
def test_arch_still_reads_only_the_weights(archives: Archives) -> None:
    model = open_model(archives.file("resnet18.trace"), arch="torchvision:resnet18")
    assert "TorchScript archive" in " ".join(model.warnings) + model.description


# -- refusals: a small scripted module, its code file rewritten -------------------------------------------
class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: Any) -> Any:
        return torch.relu(self.fc(x))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    torch.jit.trace(_Tiny().eval(), torch.randn(2, 4)).save(str(path))
    return path


def _rewritten(tiny: Path, tmp_path: Path, edit: Callable[[str], str]) -> Path:
    """The tiny archive with its root module's code file passed through `edit`."""
    out = tmp_path / "edited.pt"
    with zipfile.ZipFile(tiny) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".py") and "class _Tiny" in data.decode():
                data = edit(data.decode()).encode()
            dst.writestr(info, data)
    return out


def _body(code: str, statement: str) -> str:
    """The root forward with `statement` put before its return."""
    lines = code.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("return"))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    return "\n".join([*lines[:at], *(indent + s for s in statement.splitlines()), *lines[at:]]) + "\n"


def test_tiny_opens_at_its_traced_shape(tiny: Path) -> None:
    model = open_model(tiny)
    assert model.graph.inputs[0].shape == (2, 4) and model.graph.output.shape == (2, 3)
    with reading_at({"x": (5, 4)}):
        assert open_model(tiny).graph.output.shape == (5, 3)


@pytest.mark.parametrize(("statement", "said"), [
    ("_9 = 0\nwhile True:\n  _9 = 1", "a while loop"),
    ("_9 = torch.frobnicate(x)", "unknown function torch.frobnicate"),
    ("_9 = ops.prim.RaiseException(\"boom\", \"builtins.ValueError\")", "raises an exception.*boom"),
    ("_9 = __import__(\"os\")", "unknown name '__import__'"),
    ("_9 = exec(\"print(1)\")", "unknown name 'exec'"),
    ("_9 = x.__class__", "attribute access to __class__"),
    ("_9 = self.__dict__", "attribute access to __dict__"),
    ("_9 = [" + "0, " * 200_000 + "]", "a list of 200000"),
    ("for _9 in range(10000000):\n  pass", "range of 10000000"),
    ("if torch.gt(torch.sum(x), 0):\n  pass", "if on a tensor's value"),
    ("for _9 in range(torch.size(x, 0)):\n  _8 = ops.prim.RaiseException(\"reached\")", "raises an exception"),
])
def test_refuses_in_one_line(tiny: Path, tmp_path: Path, statement: str, said: str) -> None:
    path = _rewritten(tiny, tmp_path, lambda code: _body(code, statement))
    with pytest.raises(ModelFormatError, match=said) as err:
        open_model(path)
    assert "\n" not in str(err.value)


def test_refuses_imports_in_a_code_file(tiny: Path, tmp_path: Path) -> None:
    path = _rewritten(tiny, tmp_path, lambda code: "import os\n" + code)
    with pytest.raises(ModelFormatError, match=r"Import statement.*never run"):
        open_model(path)


def test_refuses_deep_recursion(tiny: Path, tmp_path: Path) -> None:
    def recurse(code: str) -> str:
        lines = code.splitlines()
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("return"))
        lines[at] = lines[at].replace("return ", "return (self).again(", 1) + ", )"
        return "\n".join(lines) + "\n  def again(self: Any, y: Tensor) -> Tensor:\n    return (self).again(y, )\n"

    with pytest.raises(ModelFormatError, match="nest deeper than"):
        open_model(_rewritten(tiny, tmp_path, recurse))


def test_refuses_a_damaged_archive(tiny: Path, tmp_path: Path) -> None:
    data = tiny.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError) as err:
        open_model(cut)
    assert "\n" not in str(err.value)
    garbled = io.BytesIO()
    with zipfile.ZipFile(tiny) as src, zipfile.ZipFile(garbled, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, b"\x80\x02garbage" if info.filename.endswith("data.pkl") else src.read(info))
    (tmp_path / "garbled.pt").write_bytes(garbled.getvalue())
    with pytest.raises(ModelFormatError, match=r"data\.pkl|module tree"):
        open_model(tmp_path / "garbled.pt")


def test_in_place_ops_and_shared_modules_match_autograd(tmp_path: Path) -> None:
    """A module called twice (`forward1` in traced code), an in-place ReLU on a value read again after it, a size
    query feeding a reshape: the numbers are torch autograd's."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(6, 6)
            self.act = torch.nn.ReLU(inplace=True)
            self.head = torch.nn.Linear(12, 3)

        def forward(self, x: Any) -> Any:
            h = self.act(self.fc(x))
            h = self.act(self.fc(h) + h)
            return self.head(h.reshape(x.size(0) // 2, -1))

    torch.manual_seed(0)
    net = Net().double().eval()
    x, y = np.random.default_rng(0).standard_normal((4, 6)), np.array([0, 2])
    path = tmp_path / "net.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(net, torch.from_numpy(x)).save(str(path))
    s = open_session(path, backend="numpy", dtype="float64", data={"x": x, "y": y}, loss="cross_entropy")
    s.run_to_end()
    loss, grads, _ = zoo.autograd_reference(net, (x,), y)
    assert abs(float(s.value(s.loss_node.name)) - loss) <= 1e-12 * max(1.0, abs(loss))
    for param, grad in grads.items():
        _close(s.grad(param), grad, param, 1.0)


# -- language models, traced the way people trace them ------------------------------------------------------
needs_transformers = pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is not installed")
TOKENS = np.random.default_rng(0).integers(0, 64, (2, 8))
NEXT = np.random.default_rng(1).integers(0, 64, (2, 8))  # a label per token
MASK = np.array([[1] * 8, [1] * 6 + [0] * 2])


class LanguageModels:
    """Tiny BERT (masked LM, with and without an attention mask) and GPT-2 traced from int64 token ids, each once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.built: dict[str, tuple[Any, tuple[np.ndarray, ...], Callable[[Any], Any]]] = {}

    def file(self, name: str) -> Path:
        path = self.folder / f"{name}.pt"
        if path.exists():
            return path
        zoo.torchvision_models()  # transformers imports torchvision when it is installed
        from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        strict = True
        if name.startswith("bert"):  # `torchscript=True` in transformers < 5, `return_dict=False` since: a tuple
            config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32, return_dict=False)
            model = _jittered(BertForMaskedLM(config))
            inputs = (TOKENS, MASK) if name == "bert_mask" else (TOKENS,)
            self.built[name] = (model, inputs, lambda out: out[0])
        else:  # GPT-2 returns its dict of logits (strict=False), without the key/value cache
            config = GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32, use_cache=False)
            model, strict = _jittered(GPT2LMHeadModel(config)), False
            self.built[name] = (model, (TOKENS,), lambda out: out["logits"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(model, tuple(torch.from_numpy(a) for a in self.built[name][1]),
                            strict=strict).save(str(path))
        return path

    def reference(self, name: str) -> tuple[float, dict[str, np.ndarray]]:
        """torch autograd's per-token cross-entropy and every parameter's gradient, by each of its names."""
        model, inputs, logits_of = self.built[name]
        model.zero_grad()
        logits = logits_of(model(*(torch.from_numpy(a) for a in inputs)))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(NEXT).flatten())
        loss.backward()
        named = model.named_parameters(remove_duplicate=False)
        return float(loss.detach()), {n: p.grad.numpy().copy() for n, p in named if p.grad is not None}


def _jittered(model: Any) -> Any:
    """Float64, eval mode, and LayerNorm's ones and zeros jittered so that a wrong mapping of them shows."""
    return zoo._jitter(model).double().eval()


@pytest.fixture(scope="module")
def language_models(tmp_path_factory: pytest.TempPathFactory) -> LanguageModels:
    return LanguageModels(tmp_path_factory.mktemp("language_models"))


@needs_transformers
@pytest.mark.slow  # transformers imports in seconds; each model steps in under one
@pytest.mark.parametrize("name", ["bert", "bert_mask", "gpt2"])
def test_language_models_match_autograd_per_token(name: str, language_models: LanguageModels) -> None:
    path = language_models.file(name)
    _, inputs, _ = language_models.built[name]
    names = ["input_ids", "attention_mask"][: len(inputs)]
    model = open_model(path)
    assert [(n.name, n.meta["dtype"]) for n in model.graph.inputs] == [(n, "int64") for n in names]
    assert not [n for n in model.graph if n.op.name == "unsupported"], model.warnings
    loss, grads = language_models.reference(name)
    scale = max(float(np.max(np.abs(g))) for g in grads.values())
    for backend in ("numpy", "torch"):
        data = {**dict(zip(names, inputs, strict=True)), "y": NEXT}  # (batch, tokens) labels: per-token loss
        s = open_session(path, backend=backend, dtype="float64", data=data, loss="cross_entropy")
        s.run_to_end()
        got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
        assert abs(got - loss) <= 1e-10 * max(1.0, abs(loss)), f"{backend}: loss {got} != {loss}"
        params = {n.name for n in s.graph.leaves if n.op.name == "parameter"}
        assert params <= set(grads) and len(params) > 10, sorted(params - set(grads))[:6]
        for param in params:
            _close(s.backend.to_numpy(s.grad(param)), grads[param], f"{backend} {param}", scale)


def test_a_key_value_cache_output_is_said_not_read(tmp_path: Path) -> None:
    """A legacy cache output (a tuple of (key, value) tuples beside the logits): the logits are the output, and the
    warning says the nested outputs are not read."""

    class Cached(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.key, self.value, self.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 10)

        def forward(self, ids: Any) -> Any:
            h = self.embed(ids)
            return self.head(h), ((self.key(h), self.value(h)),)

    path = tmp_path / "cached.pt"
    torch.jit.trace(Cached(), torch.zeros(1, 5, dtype=torch.int64)).save(str(path))
    model = open_model(path)
    assert model.graph.output.shape == (1, 5, 10) and model.graph.inputs[0].meta["dtype"] == "int64"
    assert any("key/value cache" in w and "not read" in w for w in model.warnings), model.warnings


def test_scripted_token_ids_are_read_as_integers(tmp_path: Path) -> None:
    class Tokens(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(12, 4)
            self.head = torch.nn.Linear(4, 12)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(ids.view(ids.size(0), -1)))

    path = tmp_path / "tokens.pt"
    torch.jit.script(Tokens()).save(str(path))
    with reading_at({"ids": (2, 3)}):
        model = open_model(path)
    assert model.graph.inputs[0].meta["dtype"] == "int64" and model.graph.output.shape == (2, 3, 12)


# -- ops propscope does not map, in-place ops on slices ------------------------------------------------------
def test_an_unmapped_op_is_a_placeholder_and_the_graph_opens(tiny: Path, tmp_path: Path) -> None:
    def edit(code: str) -> str:
        lines = code.splitlines()
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("return"))
        indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
        returned = lines[at].strip().removeprefix("return ")
        return "\n".join([*lines[:at], f"{indent}_9 = torch.logcumsumexp({returned}, 1)",
                          f"{indent}return torch.add(_9, 1)", *lines[at + 1:]]) + "\n"

    model = open_model(_rewritten(tiny, tmp_path, edit))
    held = [n for n in model.graph if n.op.name == "unsupported"]
    assert [n.meta["original_op"] for n in held] == ["aten.logcumsumexp"] and held[0].shape == (2, 3)
    assert "aten.logcumsumexp" in model.warnings[0] and "stepping stops before" in model.warnings[0]
    assert model.graph.output.shape == (2, 3)
    s = open_session(model, backend="numpy", data={"x": np.ones((2, 4))}, loss="none")
    with pytest.raises(Exception, match="logcumsumexp"):
        s.run_to_end()


class _Sliced(torch.nn.Module):
    """In-place ops on slices and selections: an add on a column, a copy into columns, a product on part of a
    column, and a fill of a computed zeros tensor's column."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.side, self.head = torch.nn.Linear(6, 6), torch.nn.Linear(6, 2), torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h[:, 0].add_(1.5)
        h[:, 1:3] = self.side(x)
        h[1:, 4].mul_(2.0)
        z = torch.zeros(x.shape[0], 6, dtype=x.dtype)
        z[:, 2] = 1.0
        return self.head(torch.tanh(h) + z)


@pytest.mark.parametrize("how", ["trace", "script"])
def test_in_place_ops_on_slices_write_through(how: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _Sliced().double().eval()
    x, y = np.random.default_rng(0).standard_normal((4, 6)), np.array([0, 2, 1, 1])
    path = tmp_path / f"sliced_{how}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (torch.jit.trace(net, torch.from_numpy(x)) if how == "trace" else torch.jit.script(net)).save(str(path))
    loss, grads, _ = zoo.autograd_reference(net, (x,), y)
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={"x": x, "y": y}, loss="cross_entropy")
        s.run_to_end()
        got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
        assert abs(got - loss) <= 1e-12 * max(1.0, abs(loss)), f"{backend}: loss {got} != {loss}"
        for param, grad in grads.items():
            _close(s.backend.to_numpy(s.grad(param)), grad, param, 1.0)


# -- what the other readers and the command line say of an archive ------------------------------------------
def test_an_archive_named_pt2_opens_as_torchscript(tiny: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "tiny.pt2"
    renamed.write_bytes(tiny.read_bytes())
    model = open_model(renamed)
    assert "TorchScript archive" in model.description and model.graph.output.shape == (2, 3)


def test_inspect_says_the_graph_opens(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tiny)]) == 0
    out = capsys.readouterr().out
    assert "propscope open tiny.pt" in out and "weights only" not in out and "fc.weight" in out


def test_read_tensors_sends_an_archive_to_open(tiny: Path) -> None:
    from propscope.graph.readers import state_dict

    with pytest.raises(ModelFormatError, match="a TorchScript archive, not a state dict: open it") as err:
        state_dict.read_tensors(tiny)
    assert "does not run" not in str(err.value)
