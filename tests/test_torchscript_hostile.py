"""Hostile TorchScript archives: the interpreter of their code never runs torch for anything but shapes on meta
tensors, charges what it folds to the open's memory budget, bounds its time and says every failure in one line.

Each archive is a small traced module whose root `forward` has a statement put before its return; each is refused
(or opens harmlessly) in well under 2 s.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import memory_budget, open_model, set_max_memory

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from propscope.graph.readers import torchscript_code  # noqa: E402  (imports torch lazily; needs it here)


class _Tiny(torch.nn.Module):  # type: ignore[name-defined]
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


def _rewritten(tiny: Path, tmp_path: Path, edit: Callable[[str], str], name: str = "hostile.pt") -> Path:
    """The tiny archive with its root module's code file passed through `edit`."""
    out = tmp_path / name
    with zipfile.ZipFile(tiny) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".py") and "class _Tiny" in data.decode():
                data = edit(data.decode()).encode()
            dst.writestr(info, data)
    return out


def _with(tiny: Path, tmp_path: Path, statement: str) -> Path:
    """The tiny archive, `statement` put before its root forward's return."""
    def edit(code: str) -> str:
        lines = code.splitlines()
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("return"))
        indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
        return "\n".join([*lines[:at], *(indent + s for s in statement.splitlines()), *lines[at:]]) + "\n"

    return _rewritten(tiny, tmp_path, edit)


@pytest.fixture
def small_budget() -> Iterator[None]:
    set_max_memory(256 * 2**20)
    try:
        with memory_budget():
            yield
    finally:
        set_max_memory(None)


def _refused_quickly(path: Path, said: str, seconds: float = 2.0) -> str:
    start = time.perf_counter()
    with pytest.raises(ModelFormatError, match=said) as err:
        open_model(path)
    took = time.perf_counter() - start
    assert took < seconds, f"refused after {took:.1f} s"
    assert "\n" not in str(err.value)
    return str(err.value)


# -- S1: torch is asked for shapes only, on meta, by an allowlist ----------------------------------------------
@pytest.mark.parametrize("statement", [
    '_9 = torch._print("ARCHIVE CODE PRINTED THIS")',
    "_9 = torch.set_grad_enabled(False)",
    "_9 = torch.manual_seed(1234)",
    '_9 = torch.from_file("/etc/hostname", None, 3, dtype=0)',
    '_9 = torch.center("a", 400000000)',
])
def test_archive_code_has_no_side_effects(statement: str, tiny: Path, tmp_path: Path,
                                          capfd: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    real = torchscript_code._ask_meta

    def recording(name: str, *rest: Any) -> Any:
        asked.append(name)
        return real(name, *rest)

    monkeypatch.setattr(torchscript_code, "_ask_meta", recording)
    torch.manual_seed(0)
    expected = torch.rand(1).item()
    torch.manual_seed(0)
    start = time.perf_counter()
    model = open_model(_with(tiny, tmp_path, statement))  # the value is unused: the graph still opens
    assert time.perf_counter() - start < 2
    assert model.graph.output.shape == (2, 3)
    assert torch.is_grad_enabled() and torch.rand(1).item() == expected
    assert "PRINTED" not in capfd.readouterr().out
    called = statement.split("torch.", 1)[1].split("(", 1)[0]
    assert asked and called not in asked  # the model's own ops were asked about, on meta


def test_a_factory_is_asked_about_on_meta_only(tiny: Path, tmp_path: Path, small_budget: None) -> None:
    """2 GiB of ones is refused by the budget before anything is filled, not made on the CPU first."""
    _refused_quickly(_with(tiny, tmp_path, "_8 = torch.ones([536870912])"), "over the memory budget")


def test_the_rule_refuses_what_it_cannot_vet() -> None:
    """Only functional ops returning tensors, their arguments vetted: no file name, generator or mutable op."""
    interp = torchscript_code.Interpreter(lambda name: torchscript_code.ClassInfo(name), [], "t.pt", "t")

    def schema(op: str, overload: str = "") -> Any:
        return next(s for s in torch._C._jit_get_schemas_for_operator(f"aten::{op}") if s.overload_name == overload)

    assert interp._meta_arguments(schema("from_file"), {"filename": "/etc/hostname", "size": 3}) is None
    assert interp._meta_arguments(schema("manual_seed"), {"seed": 1}) is None
    assert interp._meta_arguments(schema("ones"), {"size": [2**62, 2**62]}) is None
    assert interp._meta_arguments(schema("ones"), {"size": [2, 3], "device": "cpu"}) == {"size": (2, 3),
                                                                                        "device": "meta"}
    assert interp._meta_arguments(schema("add", "Scalar"), {"self": None, "other": 2**70}) is None


# -- S2: what the code folds and makes is charged to the open's budget -----------------------------------------
def test_folded_arrays_are_charged(tiny: Path, tmp_path: Path, small_budget: None) -> None:
    statement = "\n".join(f'_k{i} = torch.ones([16777216], dtype=6, layout=None, device=torch.device("cpu"), '
                          "pin_memory=False)" for i in range(40))
    said = _refused_quickly(_with(tiny, tmp_path, statement), "over the memory budget")
    assert "used by this file already" in said


def test_a_tensor_of_nested_lists_is_bounded(tiny: Path, tmp_path: Path, small_budget: None) -> None:
    def refs(item: str) -> str:
        return "[" + ", ".join([item] * 40) + "]"

    statement = "\n".join(["_l0 = " + refs("1.5"), "_l1 = " + refs("_l0"), "_l2 = " + refs("_l1"),
                           "_l3 = " + refs("_l2"), "_l4 = " + refs("_l3"), "_t = torch.tensor(_l4)"])
    _refused_quickly(_with(tiny, tmp_path, statement), "torch.tensor of more than")


def test_lists_the_code_makes_are_charged(tiny: Path, tmp_path: Path, small_budget: None) -> None:
    statement = ("_l = [" + "0, " * 50_000 + "]\n_a = annotate(List[List[int]], [])\nfor _7 in range(1000):\n"
                 "  _9 = torch.append(_a, torch.add(_l, _l))")
    _refused_quickly(_with(tiny, tmp_path, statement), "over the memory budget")


# -- S4: every failure of the interpretation is one line naming the code file, its line and the module ---------
@pytest.mark.parametrize(("statement", "said"), [
    ("for _7 in range(100000000000000000000):\n  pass", "a range of more than 2\\*\\*63"),
    ("_9 = range(100000000000000000000)", "a range of more than 2\\*\\*63"),
    ("_9 = int(torch.mul(1.0e308, 10.0))", "int\\(\\) of inf"),
    ("_9 = int(torch.sub(torch.mul(1.0e308, 10.0), torch.mul(1.0e308, 10.0)))", "int\\(\\) of nan"),
])
def test_failures_are_one_line_with_the_code_line(statement: str, said: str, tiny: Path, tmp_path: Path) -> None:
    message = _refused_quickly(_with(tiny, tmp_path, statement), said)
    assert "forward of the root module" in message
    assert "(at code/__torch__/" in message and " line " in message


def test_an_unexpected_error_is_one_line_too(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever Python raises while the code is read (here a builtin made to fail) is said with its place."""
    def broken(*args: Any) -> Any:
        raise ArithmeticError("a value no model computes")

    monkeypatch.setitem(torchscript_code._PLAIN, "sub", broken)
    from propscope.graph.readers import torchscript

    with pytest.raises(ModelFormatError, match=r"ArithmeticError: a value no model computes\) \(at code/__torch__/"
                                               r".* line [0-9]+, forward of the root module\)") as err:
        torchscript.open(_with(tiny, tmp_path, "_9 = torch.sub(1, 2)"))
    assert "\n" not in str(err.value)


# -- C1: a traced module's 0-d tensor constants stay tensors ---------------------------------------------------
class _Constants(torch.nn.Module):  # type: ignore[name-defined]
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(5, 4)

    def forward(self, x: Any) -> Any:
        h = self.fc(x) * torch.tensor(0.5, dtype=torch.float64)
        a = torch.tensor(2.5, dtype=torch.float64) - h  # a 0-d constant on the left
        b = torch.where(h > 0, h, torch.tensor(0.1, dtype=torch.float64))
        c = torch.maximum(a, torch.tensor(-1.0, dtype=torch.float64))  # an op taking tensors only
        d = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64) * b
        return a * b + c + d


def test_zero_d_constants_match_autograd(tmp_path: Path) -> None:
    import warnings

    import numpy as np

    from propscope.debugger import open_session

    torch.manual_seed(0)
    module = _Constants().double()
    x = np.random.default_rng(0).standard_normal((3, 5))
    y = np.array([0, 1, 3])
    path = tmp_path / "constants.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(module, (torch.from_numpy(x),)).save(str(path))
    session = open_session(str(path), backend="numpy", dtype="float64", data={"x": x, "y": y},
                           loss="cross_entropy")
    assert not [n for n in session.graph if n.op.name == "unsupported"]
    session.run_to_end()
    loss = torch.nn.functional.cross_entropy(module(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    got = float(session.backend.to_numpy(session.value(session.loss_node.name)))
    assert abs(got - loss.item()) <= 1e-10 * abs(loss.item())
    for name, param in module.named_parameters():
        grad = session.backend.to_numpy(session.grad(f"fc.{name.split('.')[-1]}"))
        assert np.allclose(grad, param.grad.numpy(), rtol=1e-10, atol=1e-12), name


# -- S3: time is bounded -------------------------------------------------------------------------------------
def test_fresh_names_are_the_smallest_free_suffix() -> None:
    """The linear `fresh` gives the names the quadratic search gave: the smallest free `name_i`, a name it gave
    and the caller left unused given again, names taken by hand skipped."""
    from propscope.graph.readers._build import Builder

    b = Builder("g", "test")
    given = [b.fresh("relu")]
    b.input("relu", (1,))
    b.input("relu_2", (1,))  # taken by hand ahead of the counter
    given.append(b.fresh("relu"))  # relu_1, not used: given again
    given.append(b.fresh("relu"))
    b.input(given[-1], (1,))
    for _ in range(3):
        given.append(b.fresh("relu"))
        b.input(given[-1], (1,))
    assert given == ["relu", "relu_1", "relu_1", "relu_3", "relu_4", "relu_5"]


def test_a_long_chain_opens_in_linear_time(tiny: Path, tmp_path: Path) -> None:
    path = _with(tiny, tmp_path, "_8 = x\nfor _7 in range(8000):\n  _8 = torch.relu(_8)\n_9 = _8")
    start = time.perf_counter()
    model = open_model(path)
    assert time.perf_counter() - start < 3  # 17.9 s when each name was searched from _1 and torch asked each time
    assert len(model.graph.ops) == 8002 and "relu_7999" in model.graph


def test_total_work_is_bounded(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop of a million ops is refused by the work it takes, counted in steps (a node is 16): with a tenth of
    the bound here, in a tenth of the time (about 4 s with the real one)."""
    monkeypatch.setattr(torchscript_code, "MAX_STEPS", 200_000)
    statement = "_8 = x\nfor _7 in range(10000):\n  for _6 in range(100):\n    _8 = torch.relu(_8)"
    _refused_quickly(_with(tiny, tmp_path, statement), "more than 200000 steps to read")


@pytest.mark.parametrize("statement", ["_n = 10\nfor _7 in range(22):\n  _n = torch.mul(_n, _n)",
                                       "_9 = torch.pow(torch.pow(10, 64), 64)",
                                       "_9 = int(1.0e30)"])
def test_integers_stay_in_int64(statement: str, tiny: Path, tmp_path: Path) -> None:
    _refused_quickly(_with(tiny, tmp_path, statement), "outside int64")


# -- the input-shape guess of a recurrent model --------------------------------------------------------------
class _Recurrent(torch.nn.Module):  # type: ignore[name-defined]
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(6, 8, batch_first=batch_first)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # scripted: the types are read
        out, _ = self.lstm(x)
        return self.head(out)


@pytest.mark.parametrize("batch_first", [True, False])
def test_a_recurrent_models_guess_is_its_input_size(batch_first: bool, tmp_path: Path) -> None:
    """The guess reads the LSTM's `weight_ih_l0` (input size 6), not the head's weight (8), in its layout."""
    from propscope.graph.readers import reading_at, torchscript

    path = tmp_path / "lstm.pt"
    torch.jit.script(_Recurrent(batch_first)).save(str(path))
    found = torchscript.inputs(path)
    assert found.guess == ((1, 16, 6) if batch_first else (16, 1, 6))
    with reading_at({"x": found.guess}):
        assert open_model(path).graph.output.shape == (*found.guess[:2], 5)


def test_a_truncated_archive_is_said_damaged_not_asked_its_architecture(tiny: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny.read_bytes()[: tiny.stat().st_size // 2])  # a download that stopped half way
    with pytest.raises(ModelFormatError, match="a damaged zip archive; the file may be truncated"):
        open_model(cut)
