"""The architecture zoo as TorchScript archives, traced and scripted as users ship them, opened and stepped end to end.

Each model of `zoo.ARCHITECTURES` is `torch.jit.trace`d on its example inputs and, where torch can, also
`torch.jit.script`ed (torchvision's and our own modules; transformers' models do not script, and say why in the
skip), and saved, once per test module. propscope opens the archive with the data's shapes, its code read with
`ast` and interpreted, never run, and steps to the end of the backward pass: the loss, every weight gradient and the
input gradient must be torch autograd's on the original module, to 1e-9 relative in float64 (the tolerance of
`test_architectures.py`, whose `.pt2` files come from the same models). Every archive on the NumPy backend
(hand-written derivatives); the torch backend on a CNN, a transformer and recurrent networks.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import open_model, reading_at, torchscript

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

NOISE_FLOOR = 1e-6  # of the model's largest gradient: below it a gradient is rounding (test_architectures' `close`)
TOLERANCE = 1e-9
# the heavy five: 1.5-6.5 s each (built, saved, read, stepped and checked) on an idle two-core machine, and up to
# 30-90 s while others' jobs share its cores; the whole file (40 archives) takes about a minute idle, 3.5 loaded
SLOW = {"resnet18", "mobilenet_v2", "efficientnet_b0", "swin_t", "r3d_18"}


def _slow(name: str) -> list[Any]:
    return [pytest.mark.slow] if name in SLOW else []


def _params(how: str) -> list[Any]:
    return [pytest.param(*p.values, marks=[*p.marks, *_slow(p.values[0])], id=f"{p.values[0]}-{how}")
            for p in zoo.params()]


class Archives:
    """Each architecture traced or scripted and saved on first use; what torch refused to script, with its reason."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.refused: dict[str, str] = {}

    def file(self, name: str, how: str) -> Path:
        path = self.folder / f"{name}.{how}.pt"
        if name in self.refused and how == "script":
            pytest.skip(self.refused[name])
        if not path.exists():
            model, inputs, _ = zoo.built(name)
            example = tuple(torch.from_numpy(a) for a in inputs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if how == "trace":
                    saved = torch.jit.trace(model, example, check_trace=False)
                else:
                    try:
                        saved = torch.jit.script(zoo.scriptable(model))
                    except Exception as exc:  # torch's frontend raises anything for code it cannot compile
                        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
                        first = re.sub(r" at 0x[0-9a-f]+", "", first.strip())  # the same reason at every run
                        self.refused[name] = f"torch.jit.script cannot compile {name}: {first[:160]}"
                        pytest.skip(self.refused[name])
                saved.save(str(path))
        return path


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    return Archives(tmp_path_factory.mktemp("torchscript_architectures"))


def _close(got: Any, want: np.ndarray, what: str, scale: float) -> float:
    """`got` within TOLERANCE of `want`, relative to `want`'s largest entry or, where that is smaller, to NOISE_FLOOR
    × `scale` (the model's largest gradient: a gradient that is truly 0 comes out as rounding noise); the error."""
    assert got is not None, f"no gradient for {what}"
    peak = float(np.max(np.abs(want), initial=0.0))
    diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want), initial=0.0))
    err = diff / max(peak, NOISE_FLOOR * scale, 1e-12)
    assert err <= TOLERANCE, f"{what}: relative difference {err:.3g} (largest gradient {peak:.3g}, model's {scale:.3g})"
    return err


def _steps_with_autograds_numbers(path: Path, name: str, backend: str) -> float:
    """Steps the archive to the end of the backward pass and checks it against autograd; the largest relative
    error of the loss, a weight gradient or an input gradient."""
    module, inputs, y = zoo.built(name)
    names = torchscript.inputs(path).names
    assert len(names) == len(inputs), f"inputs {names}"
    s = open_session(path, backend=backend, dtype="float64", data={**dict(zip(names, inputs, strict=True)), "y": y},
                     loss="cross_entropy")
    assert "interpreted, never run" in s.model.description
    unsupported = sorted({f"{n.meta.get('original_op')} ({n.meta.get('reason', '')})" for n in s.graph
                          if n.op.name == "unsupported"})
    assert not unsupported, f"{name}: unsupported ops {unsupported}"
    s.run_to_end()
    assert s.at_end
    loss, grads, input_grads = zoo.autograd_reference(module, inputs, y)
    got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
    worst = abs(got - loss) / max(1.0, abs(loss))
    assert worst <= TOLERANCE, f"loss {got} != {loss}"
    params = {n.name for n in s.graph.leaves if n.op.name == "parameter"}
    made_up = sorted(params - set(grads))  # a parameter autograd does not train (Whisper's frozen positions)
    assert not made_up, f"parameters without an autograd gradient: {made_up[:6]}"
    scale = max(float(np.max(np.abs(g), initial=0.0)) for g in grads.values())
    for param in params:
        worst = max(worst, _close(s.backend.to_numpy(s.grad(param)), grads[param], param, scale))
    # a weight tied under two names (GPT-2's lm_head and wte) is one leaf: its gradient was checked by the other name
    untied = [p for p in set(grads) - params if not any(np.shares_memory(grads[p], grads[q]) for q in params)]
    assert not untied, f"weights propscope has no parameter for: {sorted(untied)[:6]}"
    for input_name, grad in zip(names, input_grads, strict=True):
        if grad is not None:
            worst = max(worst, _close(s.backend.to_numpy(s.grad(input_name)), grad, f"input {input_name}", 0.0))
    return worst


@pytest.mark.parametrize("name", _params("trace"))
def test_traced_steps_with_autograds_numbers(name: str, archives: Archives) -> None:
    _steps_with_autograds_numbers(archives.file(name, "trace"), name, "numpy")


@pytest.mark.parametrize("name", _params("script"))
def test_scripted_steps_with_autograds_numbers(name: str, archives: Archives) -> None:
    _steps_with_autograds_numbers(archives.file(name, "script"), name, "numpy")


ON_TORCH = [("resnet18", "trace"), ("transformer_encoder", "trace"), ("bigru", "trace"), ("lstm_lm", "script")]


@pytest.mark.parametrize(("name", "how"), [pytest.param(name, how, marks=_slow(name), id=f"{name}-{how}")
                                           for name, how in ON_TORCH])
def test_torch_backend_steps_with_autograds_numbers(name: str, how: str, archives: Archives) -> None:
    if zoo.ARCHITECTURES[name][1] == "torchvision" and not zoo.has_torchvision():
        pytest.skip("torchvision is not installed")
    _steps_with_autograds_numbers(archives.file(name, how), name, "torch")


# -- what the zoo's code taught the interpreter, each on a module of its own ------------------------------------
class _ListsAndDicts(torch.nn.Module):
    """Swin's and IntermediateLayerGetter's scripted code: a list attribute copied and changed (`torch.copy`,
    `torch._set_item`), summed; a dict of tensors filled through a name table; a list of tensors appended to;
    identity tests of tensors and the checks MultiheadAttention makes before its inference-only fast path."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.head = torch.nn.Linear(6, 6), torch.nn.Linear(12, 3)
        self.shift: list[int] = [1, 0]
        self.names: dict[str, str] = {"fc": "hidden"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shift = self.shift.copy()
        if x.size(1) >= 6:
            shift[1] = 2
        out: dict[str, torch.Tensor] = {}
        if "fc" in self.names:
            out[self.names["fc"]] = self.fc(x)
        h = out["hidden"]
        if sum(shift) > 0:
            h = torch.roll(h, [shift[0], shift[1]], [0, 1])
        features = [h]
        features.append(torch.tanh(h))
        if x is not h and not x.is_nested and torch.is_grad_enabled() and x.device.type == "cpu":
            features[0] = features[0] * 2.0
        return self.head(torch.cat(features, 1))


def test_scripted_list_and_dict_code_matches_autograd(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _ListsAndDicts().double().eval()
    x, y = np.random.default_rng(0).standard_normal((4, 6)), np.array([0, 2, 1, 1])
    path = tmp_path / "lists.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(net).save(str(path))
    loss, grads, (input_grad,) = zoo.autograd_reference(net, (x,), y)
    s = open_session(path, backend="numpy", dtype="float64", data={"x": x, "y": y}, loss="cross_entropy")
    s.run_to_end()
    assert abs(float(s.value(s.loss_node.name)) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert {n.name for n in s.graph.leaves if n.op.name == "parameter"} == set(grads)
    for param, grad in grads.items():
        _close(s.grad(param), grad, param, 1.0)
    _close(s.grad("x"), input_grad, "input x", 1.0)


def test_a_frozen_parameter_is_a_constant(tmp_path: Path) -> None:
    """A weight saved with requires_grad=False (Whisper's sinusoidal positions, a frozen backbone) gets no gradient,
    as in autograd; the others still do."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double().eval()
    net[0].weight.requires_grad_(False)
    x, y = np.random.default_rng(0).standard_normal((2, 4)), np.array([0, 2])
    path = tmp_path / "frozen.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(net, torch.from_numpy(x)).save(str(path))
    s = open_session(path, backend="numpy", dtype="float64", data={"x": x, "y": y}, loss="cross_entropy")
    s.run_to_end()
    _, grads, _ = zoo.autograd_reference(net, (x,), y)
    assert {n.name for n in s.graph.leaves if n.op.name == "parameter"} == set(grads) == {"0.bias", "2.weight",
                                                                                          "2.bias"}
    for param, grad in grads.items():
        _close(s.grad(param), grad, param, 1.0)


class _Doubling(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = [1]
        for _ in range(40):
            sizes = sizes + sizes
        return self.fc(x) * len(sizes)


def test_a_list_doubled_in_a_loop_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "doubling.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_Doubling()).save(str(path))
    with reading_at({"x": (2, 4)}), pytest.raises(ModelFormatError, match=r"torch\.add .*larger than") as err:
        open_model(path)
    assert "\n" not in str(err.value)
