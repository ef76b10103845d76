"""Gradient checks on networks of real size: a sample of each tensor's entries (four forward passes an entry make
every entry of a MobileNet hours), and gradients too small for central differences to resolve said to be so."""

from __future__ import annotations

import numpy as np
import pytest

from propscope.cli import main
from propscope.debugger import open_session
from propscope.debugger.gradcheck import gradcheck_detailed, sample_entries
from propscope.graph import Graph, Model
from propscope.graph.readers import save_model


def wide(scale: float = 1.0) -> Model:
    """x (4, 200) · W (200, 150) · scale -> tanh -> mse: 30,000 weights, above the command's sampling threshold."""
    rng = np.random.default_rng(0)
    g = Graph("wide")
    x = g.input("x", (4, 200))
    w = g.parameter("W", (200, 150))
    b = g.parameter("b", (150,))
    h = g.add("linear", x, w, b, name="h")
    g.set_outputs(g.add("tanh", g.add("mul", h, g.add("constant", name="scale", shape=()), name="scaled"), name="out"))
    arrays = {"W": rng.normal(size=(200, 150)) * 0.05, "b": rng.normal(size=150), "scale": np.array(scale)}
    return Model(g, arrays, batch={"x": rng.normal(size=(4, 200)), "y": rng.normal(size=(4, 150))}, loss="mse")


def test_sampled_entries_include_the_largest_and_repeat() -> None:
    a = np.arange(100.0).reshape(10, 10)
    picked = sample_entries(a, 8, seed=3)
    assert len(set(picked)) == 8 and (9, 9) in picked and (9, 8) in picked
    assert picked == sample_entries(a, 8, seed=3)
    assert sample_entries(np.ones((2, 2)), 8, seed=0) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_a_sampled_check_agrees_where_the_whole_one_does() -> None:
    s = open_session(wide(), dtype="float64")
    rows = {r.row.name: r for r in gradcheck_detailed(s, samples=6)}
    assert rows["W"].row.elements == 6 and rows["b"].row.elements == 6 and rows["W"].numeric.shape == (6,)
    assert all(r.row.ok(1e-7) and r.row.relative_error < 1e-8 for r in rows.values())


def test_the_command_samples_a_big_network_and_says_so(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wide.propscope"
    save_model(wide(), path)
    assert main(["gradcheck", str(path)]) == 0
    out = capsys.readouterr().out
    assert "8 entries of each tensor (--samples 0 checks all)" in out.splitlines()[0]
    assert "all 3 gradients agree" in out


def test_gradients_too_small_to_resolve_are_said_so_not_failed(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A vanishing gradient (1e-13 of the loss's scale) is below what the differences resolve: their relative error
    there is noise, and the check says the gradient was too small to check rather than that it is wrong."""
    path = tmp_path / "vanishing.propscope"
    save_model(wide(scale=1e-13), path)
    assert main(["gradcheck", str(path), "--samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "ok, to rounding" in out and "too small for differences to check further" in out


def test_a_wrong_derivative_fails_however_large_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """A derivative 30% off (the analytic gradients scaled, as a bug would) fails, also where the loss is large
    (targets of 1,000: its rounding is 1e6 times a unit loss's) and the check samples."""
    from propscope.debugger import gradcheck as gc

    model = wide()
    model.batch["y"] = model.batch["y"] + 1000.0
    real = gc._analytic

    def wrong(*args: object) -> tuple[float, dict]:  # type: ignore[type-arg]
        loss, grads = real(*args)  # type: ignore[arg-type]
        return loss, {k: None if v is None else v * 1.3 for k, v in grads.items()}

    monkeypatch.setattr(gc, "_analytic", wrong)
    rows = gradcheck_detailed(open_session(model, dtype="float64"), samples=4)
    assert all(not r.row.ok(1e-7) and not r.row.within_noise for r in rows), [r.row for r in rows]


def test_the_app_samples_a_big_network_as_the_command_does(qtbot) -> None:
    """Debug ▸ Gradient check on a network above the threshold checks a sample of each tensor (every entry of a
    ResNet would be hours), says so, and shows the checked entries, not a whole tensor with gaps, in the inspector."""
    from PySide6.QtCore import Qt

    from propscope.gui.format import fmt_index
    from propscope.gui.main_window import MainWindow

    w = MainWindow(open_session(wide(), dtype="float64"), settings=None)
    qtbot.addWidget(w)
    w.show()
    w.gradcheck_action.trigger()
    qtbot.waitUntil(lambda: w.gradcheck.results is not None, timeout=60_000)
    results = {r.row.name: r for r in w.gradcheck.results}
    assert results["W"].row.elements == 8 and len(results["W"].entries) == 8 and results["W"].size == 30_000
    assert results["b"].row.elements == 8 and results["b"].size == 150
    assert all(r.row.relative_error < 1e-8 for r in results.values())
    assert "8 entries of each large one" in w.status_message.text()
    w.selection.select("W", (0, 0))
    assert "at 8 sampled entries of 30,000" in w.inspector.numeric_panel.title.text()
    assert w.inspector.numeric_panel.array.shape == (8,)
    header = w.inspector.numeric_panel.model.headerData(0, Qt.Orientation.Horizontal)
    assert header == fmt_index(results["W"].entries[0])  # the columns name the entries checked, not 0..7
    w.close()


def test_an_estimate_that_already_agrees_takes_no_second_step() -> None:
    """The small step is for kinks: where the ordinary estimate agrees with the analytic gradient it is kept, and the
    small one (four more evaluations) not made; where it disagrees, both are made as before."""
    from propscope.debugger.gradcheck import numeric_gradient

    x = np.array([0.3, -1.2, 2.0])
    calls = []

    def f() -> float:
        calls.append(1)
        return float(np.sum(np.sin(x)))

    exact = np.cos(x)
    got = numeric_gradient(f, x, analytic=exact)
    assert len(calls) == 3 * 4 and np.allclose(got, exact, rtol=1e-10)
    calls.clear()
    wrong = numeric_gradient(f, x, analytic=exact * 1.5)  # a wrong derivative: both steps, the estimate unchanged
    assert len(calls) == 3 * 8 and np.allclose(wrong, exact, rtol=1e-10)


def test_a_cancelled_check_stops_between_entries_and_leaves_the_weights_as_they_were() -> None:
    s = open_session("classifier", dtype="float64")
    before = {k: v.copy() for k, v in s.parameters_numpy().items()}
    asked = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 3  # three entries of the first tensor, then stop

    assert gradcheck_detailed(s, cancelled=cancelled) == []  # stopped inside the first tensor: nothing whole to show
    assert len(asked) == 4
    for name, value in s.parameters_numpy().items():
        np.testing.assert_array_equal(value, before[name])
