"""Why a step made the pass's first NaN or ±inf (`propscope/debugger/nonfinite.py`): the op's domain in the forward
pass, its derivative's in the backward, counted, as `propscope trace` and the non-finite breakpoint say it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from propscope.debugger.nonfinite import cause
from propscope.graph.ir import Graph


def _node(op: str, *shapes: tuple[int, ...]) -> Any:
    g = Graph()
    inputs = [g.input(f"in{i}", shape) for i, shape in enumerate(shapes)]
    return g.add(op, *inputs, name="the_op")


def _why(op: str, *arrays: np.ndarray, phase: str = "forward", dtype: str = "float32") -> str:
    node = _node(op, *(a.shape for a in arrays))
    values = {f"in{i}": a for i, a in enumerate(arrays)}
    return cause(node, values.get, phase, dtype)


@pytest.mark.parametrize(("op", "arrays", "said"), [
    ("log", [np.array([1.0, 0.0, -2.0, 3.0])], "log of values ≤ 0 at 2 of 4 elements (−inf at 0, NaN below)"),
    ("sqrt", [np.array([4.0, -1.0])], "sqrt of negative values at 1 of 2 elements"),
    ("rsqrt", [np.zeros(3)], "rsqrt of values ≤ 0 at all 3 elements"),
    ("div", [np.ones(4), np.array([1.0, 0.0, 2.0, 0.0])], "division by zero: the divisor is 0 at 2 of 4 elements"),
    ("exp", [np.array([1.0, 100.0])], "exp of values above 88.72 (past float32's largest number) at 1 of 2"),
    ("power", [np.array([-2.0, 2.0]), np.array([0.5, 0.5])], "a negative base to a fractional power at 1 of 2"),
    ("acos", [np.array([0.5, 1.5])], "acos of values outside [−1, 1] at 1 of 2 elements"),
])
def test_a_forward_step_names_the_inputs_outside_its_ops_domain(op: str, arrays: list[np.ndarray], said: str) -> None:
    assert _why(op, *arrays).startswith(said)


def test_pow_reads_its_exponent_from_its_attribute() -> None:
    g = Graph()
    x = g.input("x", (3,))
    node = g.add("pow", x, attrs={"exponent": 0.5})
    values = {"x": np.array([-1.0, 0.0, 4.0])}
    assert cause(node, values.get, "forward", "float64") == "a negative base to a fractional power at 1 of 3 elements"
    assert cause(node, {"x": np.array([0.0, 4.0, 1.0])}.get, "backward", "float64") == (
        "the derivative of x^p with p < 1 is inf at x = 0 (1 of 3 elements)")


def test_exp_overflow_depends_on_the_dtype() -> None:
    x = np.array([100.0])
    assert _why("exp", x, dtype="float32")
    assert _why("exp", x, dtype="float64") == ""  # e^100 is finite in float64


@pytest.mark.parametrize(("op", "arrays", "said"), [
    ("sqrt", [np.array([0.0, 4.0, 0.0])], "sqrt's derivative 1/(2√x) is inf at x = 0: 2 of 3 elements"),
    ("log", [np.array([0.0, 1.0])], "log's derivative 1/x is inf at x = 0: 1 of 2 elements"),
])
def test_a_backward_step_names_where_its_derivative_is_infinite(op: str, arrays: list[np.ndarray], said: str) -> None:
    assert _why(op, *arrays, phase="backward") == said


def test_an_input_already_non_finite_is_the_cause_where_no_domain_rule_applies() -> None:
    assert _why("add", np.array([1.0, np.nan]), np.ones(2)) == "its input in0 already holds NaN or inf"
    node = _node("add", (2,), (2,))
    assert cause(node, {"in0": np.array([1.0, np.nan]), "in1": np.ones(2)}.get, "forward", "float32",
                 carried=False) == ""
    assert _why("relu", np.array([1.0, 2.0])) == ""  # nothing to say: say nothing


def test_a_log_of_a_softmax_suggests_log_softmax() -> None:
    g = Graph()
    x = g.input("x", (2, 3))
    probs = g.add("softmax", x, name="probs", attrs={"axis": -1})
    log = g.add("log", probs, name="log")
    values = {"probs": np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])}
    assert cause(log, values.get, "forward", "float32").endswith(
        "a softmax underflows to 0 there: log_softmax computes the same without")


def test_the_trace_command_and_the_breakpoint_say_why(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    import propscope
    from propscope.cli import main

    class Distance(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x: Any) -> Any:
            return torch.sqrt((self.fc(x) - self.fc(x)) ** 2 + (x[:, :2] * 0) ** 2)  # sqrt(0): NaN only backward

    torch.manual_seed(0)
    x = torch.randn(4, 3)
    path = tmp_path / "distance.pt2"
    torch.export.save(torch.export.export(Distance(), (x,)), str(path))
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=np.ones((4, 2), np.float32))
    assert main(["trace", str(path), "--data", str(tmp_path / "d.npz"), "--loss", "mse", "--out",
                 str(tmp_path / "t.npz")]) == 0
    assert "sqrt's derivative 1/(2√x) is inf at x = 0: all 8 elements" in capsys.readouterr().out
    s = propscope.open_session(str(path), data=str(tmp_path / "d.npz"), loss="mse")
    s.break_on_nonfinite = True
    stop = s.continue_()
    assert stop is not None and stop.reason.endswith("sqrt's derivative 1/(2√x) is inf at x = 0: all 8 elements")


def test_gradcheck_says_which_side_holds_the_nan() -> None:
    from propscope.debugger.gradcheck import GradCheckRow

    row = GradCheckRow("w", "parameter", float("nan"), float("nan"), 4, analytic_nonfinite=2)
    assert row.nonfinite_text().startswith("the gradient holds NaN or inf at 2 entries where the differences are "
                                           "finite")
    assert GradCheckRow("w", "parameter", 0.0, 0.0, 4).nonfinite_text() == ""
    both = GradCheckRow("w", "parameter", float("nan"), float("nan"), 4, analytic_nonfinite=1, numeric_nonfinite=3)
    assert both.nonfinite_text() == "both hold NaN or inf (1 and 3 entries): the loss itself is not finite here"
