"""TorchScript archives whose code changes a tensor in place through a view of it, and how the reader names their
ops and says their failures.

An in-place op on a view (`h.view(2, 12).add_(1)`, `h.t().copy_(y)`, `h.unsqueeze(0)[:, 1].zero_()`) changes the
tensor it views, and a view taken before a change of its tensor sees the change: each module below is traced and
scripted, opened, and stepped on NumPy and torch in float64, and must give torch autograd's loss
and every weight's gradient. A copy (`clone`, a `reshape` of a transposed tensor) is not a view: a change to it stays
its own. A view whose write-back propscope does not express (a diagonal) is refused in one line naming it.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import open_model, reading_at

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
nn = torch.nn


class _Net(nn.Module):
    """A layer, then `changed` (a module's own in-place ops through views of its output), then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.side, self.head = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)


class ViewAdd(_Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h.view(2, 12).add_(1.5)
        return self.head(torch.tanh(h))


class ReshapeMul(_Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h.reshape(24).mul_(2.0)
        return self.head(torch.tanh(h))


class TransposeCopy(_Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h.transpose(0, 1).copy_(torch.sin(self.side(x)).t())
        return self.head(h * self.fc(x))


class TransposeInPlace(_Net):
    """`t_` on a view: the view is laid out anew, and what is written into it afterwards still reaches h."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        v = h.view(4, 6)
        v.t_()
        v[1:3].mul_(3.0)
        return self.head(torch.tanh(h) + v.t())


class UnsqueezeZero(_Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h.unsqueeze(0)[:, 1].zero_()
        return self.head(torch.tanh(h))


class ViewSeesItsBaseChange(_Net):
    """A view taken before its tensor changes (in place, or through another view) reads the change."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        flat, row = h.view(24), h[0]
        h.add_(self.side(x))
        flat.mul_(2.0)
        return self.head(torch.tanh(flat.view(4, 6))) + row[:3]


class CopiesStayTheirOwn(_Net):
    """`clone` and the reshape of a transposed tensor (which torch copies) change apart from h."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        g = h.clone()
        g.mul_(3.0)
        k = h.t().reshape(24)
        k.add_(1.0)
        return self.head(torch.tanh(h) + g) + k[:3]


MODULES = [ViewAdd, ReshapeMul, TransposeCopy, TransposeInPlace, UnsqueezeZero, ViewSeesItsBaseChange,
           CopiesStayTheirOwn]


def _saved(net: Any, how: str, x: np.ndarray, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.trace(net, torch.from_numpy(x), check_trace=False) if how == "trace" else \
            torch.jit.script(net)
        module.save(str(path))
    return path


def _close(got: Any, want: np.ndarray, what: str) -> None:
    assert got is not None, f"no gradient for {what}"
    err = zoo.relative(got, want)
    assert err <= 1e-10, f"{what}: relative difference {err:.3g}"


@pytest.mark.parametrize("how", ["trace", "script"])
@pytest.mark.parametrize("kind", MODULES, ids=lambda k: k.__name__)
def test_in_place_through_a_view_matches_autograd(kind: type, how: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = kind().double().eval()
    x, y = np.random.default_rng(0).standard_normal((4, 6)), np.array([0, 2, 1, 1])
    path = _saved(net, how, x, tmp_path / f"{kind.__name__}_{how}.pt")
    loss, grads, (x_grad,) = zoo.autograd_reference(net, (x,), y)
    with reading_at({"x": x.shape}):
        model = open_model(path)
    assert not [n for n in model.graph if n.op.name == "unsupported"], model.warnings
    for backend in ("numpy", "torch"):
        s = open_session(model, backend=backend, dtype="float64", data={"x": x, "y": y}, loss="cross_entropy")
        s.run_to_end()
        got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
        assert abs(got - loss) <= 1e-12 * max(1.0, abs(loss)), f"{backend}: loss {got} != {loss}"
        for param, grad in grads.items():
            _close(s.backend.to_numpy(s.grad(param)), grad, f"{backend} {param}")
        _close(s.backend.to_numpy(s.grad("x")), x_grad, f"{backend} x")


def test_a_view_changed_and_never_read_again_adds_no_node(tmp_path: Path) -> None:
    """`flatten` then an in-place dropout or activation (EfficientNet's head): the flattened tensor's base is never
    read again, so nothing is written back into it."""

    class Head(_Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.flatten(self.fc(x).view(4, 2, 3), 1)
            return self.head(torch.relu_(h))

    x = np.random.default_rng(0).standard_normal((4, 6))
    model = open_model(_saved(Head().eval(), "trace", x.astype(np.float32), tmp_path / "head.pt"))
    assert [n.op.name for n in model.graph.ops] == ["linear", "reshape", "flatten", "relu", "linear"], \
        [(n.name, n.op.name) for n in model.graph.ops]


def test_an_in_place_op_on_a_diagonal_is_refused_by_name(tmp_path: Path) -> None:
    class Diagonal(_Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x)
            torch.diagonal(h).add_(1.0)
            return self.head(h)

    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(ModelFormatError, match=r"add_ .*changes in place a diagonal of another tensor") as err:
        open_model(_saved(Diagonal().eval(), "trace", x, tmp_path / "diagonal.pt"))
    assert "\n" not in str(err.value)


# -- names: a traced archive's ops named as the same model's .pt2 names them ------------------------------------------
class _Convolutions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.same = nn.Conv2d(4, 4, 3, padding="same")
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.line = nn.Conv1d(2, 2, 3)
        self.fc = nn.Linear(2 * 14, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.up(self.same(self.conv(x))))
        return self.fc(torch.flatten(self.line(h.mean(2)), 1))


def test_a_traced_archive_names_its_ops_as_the_exported_program_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _Convolutions().eval()
    x = torch.randn(1, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated
        torch.jit.trace(net, x).save(str(tmp_path / "net.pt"))
    torch.export.save(torch.export.export(net, (x,)), str(tmp_path / "net.pt2"))
    traced, exported = open_model(tmp_path / "net.pt"), open_model(tmp_path / "net.pt2")
    # a .pt2's names are torch.export's (`conv2d_1`), a TorchScript archive's its module's path then the op
    ops_of = [re.sub(r"_[0-9]+$", "", n.name) for n in exported.graph.ops]
    ts_ops = [n.name.rpartition(".")[2] for n in traced.graph.ops]
    assert ts_ops == ops_of == ["conv2d", "conv2d", "conv_transpose2d", "relu", "mean", "conv1d", "flatten", "linear"]
    assert [n.name for n in traced.graph.ops][:3] == ["conv.conv2d", "same.conv2d", "up.conv_transpose2d"]
    assert not traced.warnings, traced.warnings  # padding="same" (`_convolution_mode` in traced code) is mapped
    data = {"x": x.numpy().astype(np.float64)}
    values = [open_session(m, backend="numpy", dtype="float64", data=data, loss="none") for m in (traced, exported)]
    for s in values:
        s.run_to_end()
    np.testing.assert_allclose(values[0].value(traced.graph.output.name), values[1].value(exported.graph.output.name),
                               rtol=1e-12)


# -- what forward returns, and inputs it does not use: opened, or refused in one line ---------------------------------
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated
        torch.jit.trace(_Tiny().eval(), torch.randn(2, 4)).save(str(path))
    return path


def _returning(tiny: Path, tmp_path: Path, returned: str, signature: str | None = None) -> Path:
    """The tiny archive with its root forward returning `returned` (`h` is its ReLU's output), its parameters
    written as `signature` where given."""
    out = tmp_path / "returning.pt"
    with zipfile.ZipFile(tiny) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".py") and "class _Tiny" in data.decode():
                code = re.sub(r"return (.*)", r"h = \1\n    return " + returned.replace("\\", "\\\\"), data.decode(),
                              count=1)
                if signature is not None:
                    code = re.sub(r"x: Tensor\) -> Tensor:", signature, code, count=1)
                data = code.encode()
            dst.writestr(info, data)
    return out


@pytest.mark.parametrize(("returned", "said"), [
    ("None", "returns no tensor"),
    ("(1, 2.5)", "returns no tensor"),
    ("[None, \"text\"]", "returns no tensor"),
    ("((h,),)", r"returns no tensor \(only nested structures: 0\)"),
    ("self", "returns no tensor"),
    ("torch.max_pool1d_with_indices(torch.unsqueeze(x, 0), [2])[1]", "output 0 cannot be built.*max-pool indices"),
])
def test_a_forward_returning_no_tensor_is_refused_in_one_line(tiny: Path, tmp_path: Path, returned: str,
                                                              said: str) -> None:
    with pytest.raises(ModelFormatError, match=said) as err:
        open_model(_returning(tiny, tmp_path, returned))
    assert "\n" not in str(err.value) and str(err.value).startswith(str(tmp_path))


@pytest.mark.parametrize(("returned", "outputs"), [
    ("x", ["x"]),  # forward is the identity: no op to step, said so
    ("{\"a\": h, \"b\": 3}", ["relu"]),  # a dict's tensors, its numbers left out
    ("(h, h)", ["relu", "relu"]),
    ("self.fc.weight", ["fc.weight"]),  # a parameter returned as it is
    ("(self.fc.bias, x)", ["fc.bias", "x"]),
    ("torch.zeros([2, 3])", ["output.const"]),
])
def test_a_forward_returning_its_inputs_or_weights_opens(tiny: Path, tmp_path: Path, returned: str,
                                                        outputs: list[str]) -> None:
    model = open_model(_returning(tiny, tmp_path, returned))
    assert [n.name for n in model.graph.outputs] == outputs
    if not model.graph.ops:
        assert any("makes no op" in w for w in model.warnings), model.warnings
    s = open_session(model, backend="numpy", data={"x": np.ones((2, 4))}, loss="none")
    s.run_to_end()


def test_an_unused_input_is_an_input_of_the_graph(tiny: Path, tmp_path: Path) -> None:
    path = _returning(tiny, tmp_path, "h", signature="x: Tensor, mask: Tensor) -> Tensor:")
    with reading_at({"x": (2, 4), "mask": (2, 7)}):
        model = open_model(path)
    assert [(n.name, n.shape) for n in model.graph.inputs] == [("x", (2, 4)), ("mask", (2, 7))]
    s = open_session(model, backend="numpy", data={"x": np.ones((2, 4)), "mask": np.zeros((2, 7))}, loss="none")
    s.run_to_end()
