"""Gradient flow (debugger/grad_flow.py, `propscope grads`): every parameter's gradient after one backward pass in
forward order, and the ones that vanish, explode or are not finite flagged, on networks built to do each."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.cli import main
from propscope.debugger import open_session
from propscope.debugger.grad_flow import gradient_flow
from propscope.graph.errors import PropscopeError


def test_the_rows_are_the_gradients_of_the_whole_pass_in_forward_order() -> None:
    s = open_session("xor", dtype="float64")
    flow = gradient_flow(s)
    assert s.cursor == 0  # the pass ran in the trace; the cursor stayed
    assert [r.name for r in flow.rows] == ["W1", "b1", "W2", "b2"]
    s.run_to_end()
    for r in flow.rows:
        g = s.grad(r.name)
        assert r.norm == pytest.approx(float(np.linalg.norm(g)), rel=1e-12)
        assert r.rms == pytest.approx(float(np.linalg.norm(g)) / np.sqrt(g.size), rel=1e-12)
        assert r.largest == pytest.approx(float(np.max(np.abs(g))), rel=1e-12)
        w = s.parameters_numpy()[r.name]
        assert not np.any(w) or r.ratio == pytest.approx(r.norm / float(np.linalg.norm(w)), rel=1e-12)
    assert flow.loss == pytest.approx(float(s.value(s.loss_node.name)), rel=1e-12)
    assert not flow.flagged and "every gradient finite" in flow.summary()


def _export(model: Any, x: np.ndarray, path: Path) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model.double().eval(), (torch.from_numpy(x),)), str(path))
    return path


def _chain(scale: float, act: str, layers: int = 10) -> Any:
    import torch

    torch.manual_seed(0)
    blocks: list[Any] = []
    for _ in range(layers):
        fc = torch.nn.Linear(8, 8)
        with torch.no_grad():
            fc.weight.mul_(scale)
        blocks += [fc, torch.nn.Sigmoid() if act == "sigmoid" else torch.nn.Identity()]
    return torch.nn.Sequential(*blocks, torch.nn.Linear(8, 3))


@pytest.mark.torch
def test_a_deep_sigmoid_chain_flags_its_first_layers_as_vanishing(tmp_path: Path) -> None:
    path = _export(_chain(0.3, "sigmoid"), np.random.default_rng(0).standard_normal((4, 8)), tmp_path / "deep.pt2")
    flow = gradient_flow(open_session(path, dtype="float64", loss="cross_entropy"))
    weights = [r for r in flow.rows if r.name.endswith("weight")]
    assert [r.name for r in weights][:2] == ["0.weight", "2.weight"]  # forward order
    assert weights[0].verdict == "vanishing" and weights[-1].verdict == ""
    assert not any(r.verdict == "exploding" for r in flow.rows)  # the layers nearest the loss are the reference
    assert weights[0].rms < weights[-1].rms * 1e-3
    # weights are judged, biases not (their gradient is the layer's error again): see grad_flow's docstring
    assert "vanishing (0.weight, 2.weight" in flow.summary() and not any(
        r.verdict for r in flow.rows if r.name.endswith("bias"))
    assert main(["grads", str(path), "--loss", "cross_entropy", "--dtype", "float64", "--strict"]) == 1


@pytest.mark.torch
def test_a_chain_of_large_weights_flags_its_first_layers_as_exploding(tmp_path: Path) -> None:
    path = _export(_chain(6.0, "linear"), np.random.default_rng(0).standard_normal((4, 8)), tmp_path / "big.pt2")
    flow = gradient_flow(open_session(path, dtype="float64", loss="cross_entropy"))
    # the error arriving at the first layer is 10⁴ times that at the loss (every weight's own gradient is alike:
    # the forward pass grew as much), so the first layer's weights are flagged on it
    first = next(r for r in flow.rows if r.name == "0.weight")
    assert first.verdict == "exploding" and "growing toward the input" in first.flag and flow.rows[-1].verdict == ""
    assert not any(r.verdict == "vanishing" for r in flow.rows)


@pytest.mark.torch
def test_a_nan_gradient_is_flagged_and_counted(tmp_path: Path) -> None:
    import torch

    class Root(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.out = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)

        def forward(self, x: Any) -> Any:
            return self.out(torch.sqrt(self.fc(x)))  # negative entries: NaN, and NaN gradients behind them

    torch.manual_seed(0)
    path = _export(Root(), np.random.default_rng(0).standard_normal((3, 4)), tmp_path / "root.pt2")
    flow = gradient_flow(open_session(path, dtype="float64", loss="mse"))
    fc = next(r for r in flow.rows if r.name == "fc.weight")
    assert fc.verdict == "not finite" and fc.nonfinite > 0 and np.isfinite(fc.norm)
    assert flow.summary().index("not finite") < len(flow.summary())


def test_without_a_loss_it_says_how_to_get_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PropscopeError, match="attach one"):
        gradient_flow(open_session("xor", loss="none"))
    assert main(["grads", "xor", "--loss", "none"]) == 2
    assert "no loss" in capsys.readouterr().err


def test_the_command_prints_the_table_and_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "flow.csv"
    assert main(["grads", "classifier", "--csv", str(out), "--strict"]) == 0
    text = capsys.readouterr().out
    assert "‖∂L/∂w‖" in text and "every gradient finite" in text and f"wrote {out}" in text
    lines = out.read_text().splitlines()
    assert lines[0].startswith("parameter,module,shape,step,norm") and len(lines) > 2


def test_the_terminal_debugger_prints_the_flow_and_keeps_the_cursor() -> None:
    import io

    from propscope.debugger.repl import DebuggerShell

    s = open_session("classifier", dtype="float64")
    out = io.StringIO()
    DebuggerShell(s, stdin=io.StringIO("step 3\nflow\nflow flagged\nquit\n"), stdout=out).cmdloop()
    text = out.getvalue()
    assert text.count("‖∂L/∂w‖") == 2 and "every gradient finite" in text
    assert s.cursor == 3


def two_layers(nan_at: tuple[int, int] | None = None) -> Any:
    """x → linear (16×8, zero bias) → relu → linear (8×2, zero bias) → MSE; `nan_at`: one weight of the first NaN,
    which makes its column of outputs, then the loss and every gradient NaN."""
    from propscope.backends import get_backend
    from propscope.debugger.session import Session
    from propscope.graph.ir import Graph
    from propscope.graph.model import Model

    rng = np.random.default_rng(0)
    g = Graph("two_layers")
    x = g.input("x", (4, 16))
    params = {"fc.weight": (16, 8), "fc.bias": (8,), "out.weight": (8, 2), "out.bias": (2,)}
    p = {name: g.parameter(name, shape, module=name.split(".")[0]) for name, shape in params.items()}
    h = g.add("relu", g.add("linear", x, p["fc.weight"], p["fc.bias"], name="fc", module="fc"), name="act",
              module="act")
    g.set_outputs(g.add("linear", h, p["out.weight"], p["out.bias"], name="out", module="out"))
    arrays = {name: rng.standard_normal(shape) if name.endswith("weight") else np.zeros(shape)
              for name, shape in params.items()}
    if nan_at is not None:
        arrays["fc.weight"][nan_at] = np.nan
    data = {"x": rng.standard_normal((4, 16)), "y": rng.standard_normal((4, 2))}
    return Session(Model(g, arrays), get_backend("numpy", "float64"), data, "mse")


def test_a_nan_weight_is_named_first_and_nan_gradients_read_as_nan_not_zero() -> None:
    flow = gradient_flow(two_layers(nan_at=(3, 5)))
    rows = {r.name: r for r in flow.rows}
    fc = rows["fc.weight"]
    assert fc.value_nonfinite == fc.value_nan == 1 and fc.nonfinite == fc.nan == 128 and not fc.has_finite
    assert fc.flag == "not finite (holds 1 NaN itself; ∂L/∂w: all 128 NaN)"
    assert rows["out.bias"].flag == "not finite (∂L/∂w: all 2 NaN)" and rows["out.bias"].value_nonfinite == 0
    assert all(r.verdict == "not finite" for r in flow.rows)
    assert flow.summary() == ("4 parameters, loss nan: fc.weight holds 1 NaN itself; first non-finite value at "
                              "forward step 1 (linear fc); 4 not finite (fc.bias, fc.weight, out.bias, … 1 more)")
    text = flow.text()
    line = next(line for line in text.splitlines() if " fc.weight " in line)
    assert line.split()[3:7] == ["—"] * 4 and "0.000e+00" not in text and "nan" not in text
    record = next(r for r in flow.as_dicts() if r["parameter"] == "fc.weight")
    assert record["norm"] is None and record["ratio"] is None and record["value_nonfinite"] == 1
    assert record["flag"] == "not finite"


def test_a_partly_nan_gradient_keeps_the_norms_of_its_finite_entries_and_says_so() -> None:
    import dataclasses

    from propscope.debugger.grad_flow import ParamFlow

    row = ParamFlow("w", "", (4, 4), 0, 1.0, 0.25, 0.5, 2.0, 3, "not finite", nan=2)
    assert row.has_finite and row.stat(row.norm) == 1.0 and row.ratio == 0.5
    assert row.flag == "not finite (∂L/∂w: 2 NaN, 1 inf of 16; norms of the 13 finite)"
    assert dataclasses.replace(row, nonfinite=16, nan=16).flag == "not finite (∂L/∂w: all 16 NaN)"


def test_the_ratio_of_a_zero_bias_is_undefined_not_a_nan_found(tmp_path: Path) -> None:
    flow = gradient_flow(two_layers())
    bias = next(r for r in flow.rows if r.name == "fc.bias")
    assert bias.weight_norm == 0 and bias.verdict == "" and bias.norm > 0
    line = next(line for line in flow.text().splitlines() if " fc.bias " in line)
    assert line.split()[-1] == "—" and "nan" not in flow.text()
    assert next(r for r in flow.as_dicts() if r["parameter"] == "fc.bias")["ratio"] is None
    assert "every gradient finite" in flow.summary()
