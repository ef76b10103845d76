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
    assert "vanishing (0.bias, 0.weight" in flow.summary()
    assert main(["grads", str(path), "--loss", "cross_entropy", "--dtype", "float64", "--strict"]) == 1


@pytest.mark.torch
def test_a_chain_of_large_weights_flags_its_first_layers_as_exploding(tmp_path: Path) -> None:
    path = _export(_chain(6.0, "linear"), np.random.default_rng(0).standard_normal((4, 8)), tmp_path / "big.pt2")
    flow = gradient_flow(open_session(path, dtype="float64", loss="cross_entropy"))
    # a bias's gradient is the backpropagated error itself: 10⁴ times larger at the input than at the loss
    first = next(r for r in flow.rows if r.name == "0.bias")
    assert first.verdict == "exploding" and flow.rows[-1].verdict == ""
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
