"""TorchScript archives (`torch.jit.trace` / `torch.jit.script`, saved) open as a steppable graph from their own code,
read with `ast` and interpreted, never run; hostile or damaged archives are refused in one line.

Each model is traced or scripted once (a module fixture); propscope opens the file with the data's shapes and steps
to the end of the backward pass on the NumPy and the torch backend, which must give torch autograd's loss and every
weight gradient of the original module to 1e-10 relative, in float64.
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
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if how == "trace":
                    saved = torch.jit.trace(model, tuple(torch.from_numpy(a) for a in inputs), check_trace=False)
                else:
                    saved = torch.jit.script(model)
                saved.save(str(path))
        return path

    def batch(self, name: str) -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
        self.file(name)
        return self.built[name]


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    return Archives(tmp_path_factory.mktemp("torchscript"))


def _close(got: Any, want: np.ndarray, what: str, scale: float) -> None:
    assert got is not None, f"no gradient for {what}"
    diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want), initial=0.0))
    err = diff / max(float(np.max(np.abs(want), initial=0.0)), 1e-6 * scale, 1e-12)
    assert err <= 1e-10, f"{what}: relative difference {err:.3g}"


@pytest.mark.slow  # 4-12 s each: a real network stepped through on NumPy
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", list(MODELS))
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
