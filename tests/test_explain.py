"""'Explain this gradient': the paths from one element to the loss sum to the computed gradient."""

from __future__ import annotations

import io

import numpy as np
import pytest

from propscope.debugger import open_session
from propscope.debugger.explain import ExplainError
from propscope.debugger.repl import DebuggerShell
from propscope.graph import EXAMPLES


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_paths_sum_to_the_computed_gradient_on_every_example(name: str) -> None:
    s = open_session(name, dtype="float64")
    rng = np.random.default_rng(1)
    for param in s.graph.parameters:
        index = tuple(int(rng.integers(0, d)) for d in param.shape)
        e = s.explain(param.name, index, max_paths=50)
        assert e.total_paths >= 1
        assert e.agrees(rtol=1e-9, atol=1e-12), (param.name, index, e.path_sum, e.computed)
        assert np.isclose(sum(p.product for p in e.paths) + e.omitted_sum, e.computed, rtol=1e-9, atol=1e-12)


def test_xor_w1_has_one_path_per_sample_through_x_sigma_w2_sigma_loss() -> None:
    s = open_session("xor", dtype="float64")
    e = s.explain("W1", (0, 2))
    assert e.total_paths == 4 and e.omitted == 0
    s.run_to_end()
    x, w2 = s.value("X"), s.value("W2")
    h, out, y = s.value("hidden_output"), s.value("final_output"), s.batch["y"]
    for sample, path in enumerate(e.paths):
        assert [f.consumer for f in path.factors] == [
            "hidden_input",
            "hidden_output",
            "final_input",
            "final_output",
            "loss",
        ]
        assert all(f.element[0] == sample for f in path.factors[:-1])
        expected = [
            x[sample, 0],
            h[sample, 2] * (1 - h[sample, 2]),
            w2[2, 0],
            out[sample, 0] * (1 - out[sample, 0]),
            out[sample, 0] - y[sample, 0],
        ]
        np.testing.assert_allclose([f.value for f in path.factors], expected, rtol=1e-12)
    assert e.agrees(rtol=1e-12)


def test_long_enumerations_are_capped_and_say_how_many_were_left_out() -> None:
    s = open_session("classifier", dtype="float64")
    e = s.explain("W1", (1, 3), max_paths=5)
    assert len(e.paths) == 5 and e.total_paths == 90 * 3 and e.omitted == 265
    assert "265 more path(s)" in e.text()
    assert e.agrees(rtol=1e-9)


def test_explain_refuses_what_it_cannot_explain() -> None:
    s = open_session("xor")
    with pytest.raises(ExplainError, match="not an element"):
        s.explain("W1", (5, 0))
    with pytest.raises(ExplainError, match="needs a loss"):
        open_session("xor", loss="none").explain("W1", (0, 0))


def run_shell(target: str, commands: str) -> str:
    out = io.StringIO()
    shell = DebuggerShell(open_session(target, dtype="float64"), stdin=io.StringIO(commands), stdout=out)
    shell.cmdloop()
    return out.getvalue()


def test_terminal_debugger_steps_breaks_prints_and_explains() -> None:
    text = run_shell(
        "xor",
        "step 6\nback\nbreak hidden_output backward\ncontinue\ngrad W2\nprint final_output\nexplain W1 0 2\n"
        "list\nbogus\nprint nope\nquit\n",
    )
    assert "backward 6/10 · sse loss" in text and "forward 5/10 · sse loss" in text
    assert "stopped at step 9: breakpoint on backward hidden_output" in text
    assert "∂L/∂W2 = shape (4, 1)" in text
    assert "4 path(s) to the loss" in text and "equals the computed gradient" in text
    assert "->●" in text and "unknown command 'bogus'" in text
    assert "has no node named 'nope'" in text


def test_terminal_debugger_breaks_on_nan() -> None:
    s = open_session(
        "xor",
        dtype="float64",
        data={"X": np.array([[0, 0], [0, np.nan], [1, 0], [1, 1.0]]), "y": np.array([[0], [1], [1], [0.0]])},
    )
    out = io.StringIO()
    DebuggerShell(s, stdin=io.StringIO("break nan\ncontinue\nquit\n"), stdout=out).cmdloop()
    assert "non-finite value (NaN or Inf) produced by linear hidden_input" in out.getvalue()
