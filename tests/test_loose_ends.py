"""Loose ends users hit, each pinned by a test that failed before its fix.

- A traced nn.LSTMCell (TorchScript) chunks its gates with `unsafe_chunk`; a `.pt2` keeps `aten.lstm_cell` (and
  gru_cell, rnn_tanh_cell) whole: both open and step with autograd's numbers.
- An ONNX Cast to float16 / bfloat16 rounds through that type as torch's `.half()` does (1e5 is inf in float16),
  from both of torch's exporters, values and gradients.
- Norm statistics of a constant row are exact in float32 on NumPy as torch's are: layer_norm and group_norm give
  exactly b there, as torch; batch_norm in training mode gives torch's x·α + β, whose rounding torch keeps.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
pytestmark = pytest.mark.torch


def _quiet_trace(module: Any, inputs: tuple[np.ndarray, ...], path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(module, tuple(torch.from_numpy(a) for a in inputs)).save(str(path))
    return path


def _quiet_export(module: Any, inputs: tuple[np.ndarray, ...], path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(module, tuple(torch.from_numpy(a) for a in inputs)), str(path))
    return path


# -- 1. recurrent cells: a traced LSTMCell's unsafe_chunk, a .pt2's lstm_cell ------------------------------------
class TwoSteps(nn.Module):
    """A cell stepped twice, the second step from the first's state (so a state that is not the default zeros
    flows in), then a linear head over h (and c, for the LSTM)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[kind](3, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        if self.kind == "lstm":
            h, c = self.cell(x)
            h, c = self.cell(x * 0.5, (h, c))
            return self.head(h * c + h)
        h = self.cell(x)
        return self.head(self.cell(x * 0.5, h))


def _cell_model(kind: str) -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    return TwoSteps(kind).double(), (x,), np.array([0, 1, 1, 0, 1])


def _steps_as_autograd(path: Path, module: Any, inputs: tuple[np.ndarray, ...], y: np.ndarray, backend: str) -> None:
    model = open_model(path)
    assert not [n for n in model.graph if n.op.name == "unsupported"], model.warnings
    s = open_session(model, backend=backend, dtype="float64", data={"x": inputs[0], "y": y}, loss="cross_entropy")
    s.run_to_end()
    loss, grads, _ = zoo.autograd_reference(module, inputs, y)
    assert s.loss_node is not None
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    for name, want in grads.items():
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), want) <= 1e-12, name


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_traced_cells_step_as_autograd(kind: str, backend: str, tmp_path: Path) -> None:
    module, inputs, y = _cell_model(kind)
    path = _quiet_trace(module, inputs, tmp_path / f"{kind}_cell.pt")
    _steps_as_autograd(path, module, inputs, y, backend)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_exported_cells_step_as_autograd(kind: str, backend: str, tmp_path: Path) -> None:
    module, inputs, y = _cell_model(kind)
    path = _quiet_export(module, inputs, tmp_path / f"{kind}_cell.pt2")
    assert f"aten.{kind}{'_tanh' if kind == 'rnn' else ''}_cell" in str(torch.export.load(str(path)).graph)
    _steps_as_autograd(path, module, inputs, y, backend)


# -- 2. ONNX Cast to float16 / bfloat16 rounds through it -------------------------------------------------------
class Narrowed(nn.Module):
    """x · w through float16 and through bfloat16 and back to x's dtype (as `x.half().float()` in float32)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, 2.0, 3.0, 1.0]))

    def forward(self, x: Any) -> Any:
        h = x * self.w
        return h.half().to(x.dtype) * 2.0 + h.bfloat16().to(x.dtype) * x


BIG = np.array([[1e5, 1.0, 0.1, -2.0], [3.3, 1e-3, 4e4, -7e4]], dtype=np.float32)  # 1e5, 1.2e5, 7e4 > 65504
SMALL = np.array([[1.00390625, 0.3, 0.1, -2.7], [3.3, 1e-3, 40.1, -7.77]], dtype=np.float32)


def _torch_run(x: np.ndarray, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """The module's output and ∂L/∂w for L = mean(out²), in `dtype` (a float64 module rounds at .half() too)."""
    module = Narrowed().to(dtype)
    out = module(torch.from_numpy(x).to(dtype))
    (out * out).mean().backward()
    return out.detach().numpy(), module.w.grad.numpy()


@pytest.fixture(scope="module", params=[True, False], ids=["dynamo", "torchscript_exporter"])
def narrowed_onnx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    path = tmp_path_factory.mktemp("cast") / "narrowed.onnx"
    return zoo.export_onnx(Narrowed(), (BIG,), path, dynamo=request.param)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_onnx_cast_to_half_overflows_as_torchs(narrowed_onnx: Path, backend: str) -> None:
    """float32 bit for bit, inf where float16 overflows; a float64 session as a float64 module, which rounds too."""
    for dtype in (torch.float32, torch.float64):
        want, _ = _torch_run(BIG, dtype)
        assert np.isinf(want).sum() == 3
        s = open_session(narrowed_onnx, backend=backend, dtype=str(dtype).removeprefix("torch."), data={"x": BIG},
                         loss="none")
        s.run_to_end()
        np.testing.assert_array_equal(s.backend.to_numpy(s.value(s.prediction_node.name)), want, err_msg=str(dtype))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_onnx_cast_rounds_values_and_gradients_as_torchs(narrowed_onnx: Path, backend: str) -> None:
    """On values bfloat16 and float16 round visibly (1.00390625 is a tie in bfloat16): output and ∂L/∂w."""
    model = open_model(narrowed_onnx)
    assert sorted(n.attrs["dtype"] for n in model.graph if n.op.name == "cast") == ["bfloat16", "float16"]
    unrounded = (SMALL * np.float32([1, 2, 3, 1])) * (2 + SMALL)
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        want, grad = _torch_run(SMALL, dtype)
        assert np.abs(want - unrounded).max() > 1e-3  # the rounding shows
        s = open_session(model, backend=backend, dtype=str(dtype).removeprefix("torch."),
                         data={"x": SMALL, "y": np.zeros(want.shape)}, loss="mse")
        s.run_to_end()
        got = s.backend.to_numpy(s.value(s.prediction_node.name))
        np.testing.assert_allclose(got, want, rtol=tol * 1e-2, atol=0, err_msg=str(dtype))
        np.testing.assert_allclose(s.backend.to_numpy(s.grad("w")), grad, rtol=tol, err_msg=str(dtype))


# -- 3. norms of a constant row in float32 --------------------------------------------------------------------------
CONSTANTS = (0.7, 1.3, 3.1, -2.9, 100.3)


def _with_constant(shape: tuple[int, ...], value: float, where: Any, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x[where] = value
    return x


@pytest.mark.parametrize("value", CONSTANTS)
def test_layer_norm_of_a_constant_row_is_torchs_bit_for_bit(value: float) -> None:
    from propscope.backends.numpy.norm import layer_norm

    x = _with_constant((4, 37), value, 2)
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal(37).astype(np.float32), rng.standard_normal(37).astype(np.float32)
    want, mean, rstd = torch.native_layer_norm(torch.from_numpy(x), (37,), torch.from_numpy(w),
                                               torch.from_numpy(b), 1e-5)
    assert mean[2].item() == np.float32(value) and rstd[2].item() == np.float32(1) / np.sqrt(np.float32(1e-5))
    got = layer_norm.forward(x, w, b, (37,), 1e-5)
    np.testing.assert_array_equal(got[2], want.numpy()[2])  # exactly b
    np.testing.assert_array_equal(got[2], b)
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=2e-6)


@pytest.mark.parametrize("value", CONSTANTS)
def test_group_norm_of_a_constant_group_is_torchs_bit_for_bit(value: float) -> None:
    """torch's F.group_norm without weights subtracts the exact mean: 0 there; so do propscope's ones and zeros."""
    from propscope.backends.numpy.norm import group_norm

    x = _with_constant((3, 4, 5, 5), value, (1, slice(0, 2)))  # sample 1's first group of two channels
    want = F.group_norm(torch.from_numpy(x), 2).numpy()
    got = group_norm.forward(x, np.ones(4, np.float32), np.zeros(4, np.float32), 2, 1e-5)
    assert not want[1, :2].any()
    np.testing.assert_array_equal(got[1, :2], want[1, :2])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


@pytest.mark.parametrize("value", CONSTANTS)
def test_batch_norm_of_a_constant_channel_keeps_torchs_rounding(value: float) -> None:
    """Training batch norm: torch's statistics are exact there too, but its output x·α + β is not b: the rounding
    of μ·α stays, and propscope's with it (bit for bit where torch's vectorised loop fuses the multiply-add, as on
    x86-64 with AVX2 and on ARM; else within that rounding)."""
    from propscope.backends.numpy.norm import batch_norm

    x = _with_constant((3, 4, 5, 6), value, (slice(None), 1))
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    want, mean, invstd = torch.native_batch_norm(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                                 None, None, True, 0.1, 1e-5)
    assert mean[1].item() == np.float32(value)
    got = batch_norm.forward(x, w, b, np.zeros(4, np.float32), np.ones(4, np.float32), True, 0.1, 1e-5)
    want = want.numpy()
    if (want[:, 1] != b[1]).any():  # torch fused: its rounding of μ·α, reproduced
        np.testing.assert_array_equal(got[:, 1], want[:, 1])
    rounding = float(np.spacing(np.float32(abs(value) * invstd[1].item() * abs(w[1]))))
    np.testing.assert_allclose(got[:, 1], want[:, 1], rtol=0, atol=rounding)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_a_layer_norm_session_gives_b_on_a_constant_row(tmp_path: Path) -> None:
    """Through a .pt2 and a float32 NumPy session: constant rows give torch's output, exactly the norm's bias."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 37), nn.LayerNorm(37))
    with torch.no_grad():
        module[0].weight[:] = 0.0  # every row's features equal their bias: x · 0 + b
        module[1].bias[:] = torch.linspace(-1, 1, 37)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    path = _quiet_export(module, (x,), tmp_path / "ln.pt2")
    module[0].bias.data[:] = 1.3  # constant rows (the session loads this state below)
    want = module(torch.from_numpy(x)).detach().numpy()
    s = open_session(path, dtype="float32", data={"x": x}, loss="none")
    s.set_params({k: v.detach().numpy() for k, v in module.state_dict().items()})
    s.run_to_end()
    got = s.value(s.prediction_node.name)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[0], module[1].bias.detach().numpy())


# -- 4. a model input named y -------------------------------------------------------------------------------------
class TakesY(nn.Module):
    """forward(x, y): the second input is named as the loss's target is."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Any, y: Any) -> Any:
        return self.fc(x) * y


def _y_model_file(kind: str, folder: Path) -> tuple[Path, tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(0)
    inputs = (rng.standard_normal((5, 4)), rng.standard_normal((5, 3)))
    module = TakesY().double()
    if kind == "pt2":
        return _quiet_export(module, inputs, folder / "takes_y.pt2"), inputs
    if kind == "torchscript":
        return _quiet_trace(module, inputs, folder / "takes_y.pt"), inputs
    pytest.importorskip("onnx")
    named = {} if kind == "onnx_dynamo" else {"input_names": ["x", "y"]}  # the old exporter names them onnx::…
    return zoo.export_onnx(module, inputs, folder / f"takes_y.{kind}.onnx", dynamo=kind == "onnx_dynamo",
                           **named), inputs


Y_FORMATS = ["pt2", "onnx_dynamo", "onnx", "torchscript"]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("kind", Y_FORMATS)
def test_an_input_named_y_is_given_as_y_model_beside_the_target(kind: str, backend: str, tmp_path: Path) -> None:
    path, inputs = _y_model_file(kind, tmp_path)
    labels = np.array([0, 2, 1, 1, 0])
    s = open_session(path, backend=backend, dtype="float64", data={"x": inputs[0], "y_model": inputs[1], "y": labels},
                     loss="cross_entropy")
    renamed = s.graph["y_model"]
    assert renamed.op.name == "input" and renamed.meta.get("returns") == "y"  # shown by its own name still
    s.run_to_end()
    loss, grads, input_grads = zoo.autograd_reference(TakesY().double(), inputs, labels)
    assert s.loss_node is not None
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12
    for name, want in grads.items():
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), want) <= 1e-12, name
    assert zoo.relative(s.backend.to_numpy(s.grad("y_model")), input_grads[1]) <= 1e-12


@pytest.mark.parametrize("kind", Y_FORMATS)
def test_without_a_loss_the_datas_y_is_the_input(kind: str, tmp_path: Path) -> None:
    """Forward only, as before: `y` feeds the input, and is not read as labels that would choose a loss."""
    path, inputs = _y_model_file(kind, tmp_path)
    s = open_session(path, dtype="float64", data={"x": inputs[0], "y": inputs[1]})
    assert s.loss_node is None and s.graph["y"].op.name == "input"
    s.run_to_end()
    want = TakesY().double()(*(torch.from_numpy(a) for a in inputs)).detach().numpy()
    np.testing.assert_allclose(s.value(s.prediction_node.name), want, rtol=1e-13)


def test_a_missing_y_model_says_where_the_input_went(tmp_path: Path) -> None:
    from propscope.graph.errors import ShapeError

    path, inputs = _y_model_file("pt2", tmp_path)
    with pytest.raises(ShapeError, match=r"no array for input 'y_model'.*the model's input 'y'.*target"):
        open_session(path, data={"x": inputs[0], "y": np.zeros(5, dtype=np.int64)}, loss="cross_entropy")


def test_the_command_lines_data_reaches_an_input_named_y(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from propscope.cli import main

    path, inputs = _y_model_file("torchscript", tmp_path)
    np.savez(tmp_path / "batch.npz", x=inputs[0], y_model=inputs[1], y=np.array([0, 2, 1, 1, 0]))
    assert main(["compare", str(path), "--data", str(tmp_path / "batch.npz"), "--dtype", "float64",
                 "--loss", "cross_entropy"]) == 0
    assert "nodes agree" in capsys.readouterr().out
