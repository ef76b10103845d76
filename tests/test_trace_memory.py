"""A pass that would not fit in the memory budget is refused in one line before it runs (debugger/memory.py); the
estimate it is refused on is what the trace really keeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.backends import get_backend
from propscope.cli import main
from propscope.debugger import BackwardStep, Session, open_session
from propscope.debugger.memory import PassMemoryError, allowing, scaled_by_batch
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.graph.readers import save_model
from propscope.graph.readers._budget import set_max_memory

ROWS = 256  # each op of `wide` keeps ROWS × ROWS numbers: 256 KiB in float32


@pytest.fixture(autouse=True)
def default_budget() -> Iterator[None]:
    yield
    set_max_memory(None)  # the budget is process-wide: the next test starts from the default


def wide() -> Model:
    """A few KiB of weights and data whose pass keeps a few MiB: an outer sum, three tanh, a row sum."""
    g = Graph("wide")
    x, p = g.input("x", (ROWS, 1)), g.parameter("p", (1, ROWS))
    h = g.add("add", x, p, name="outer")
    for k in range(3):
        h = g.add("tanh", h, name=f"tanh{k}")
    g.set_outputs(g.add("sum", h, name="rows", attrs={"axis": 1, "keepdims": True}))
    rng = np.random.default_rng(0)
    return Model(g, {"p": rng.normal(size=(1, ROWS))},
                 batch={"x": rng.normal(size=(ROWS, 1)), "y": rng.normal(size=(ROWS, 1))}, loss="mse")


def kept_bytes(session: Session) -> int:
    """What the trace holds now, measured: every value an op made and every gradient (contributions and running
    totals), each array once."""
    trace, arrays = session.trace, {}
    for name, value in trace.values.items():
        if not session.graph[name].is_leaf:
            arrays[id(value)] = value
    for record in trace.records:
        if isinstance(record, BackwardStep):
            for term in record.terms:
                arrays[id(term.contribution)], arrays[id(term.total)] = term.contribution, term.total
    for history in trace._history.values():
        for _, total in history:
            arrays[id(total)] = total
    return sum(np.asarray(a).nbytes for a in arrays.values())


@pytest.mark.parametrize("example", ["cnn", "lstm", "attention"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_estimate_is_what_a_real_pass_keeps(example: str, dtype: str) -> None:
    s = open_session(example, dtype=dtype)
    estimate = s.trace.estimate()
    half = s.n_forward + 2
    assert s.trace.kept_bytes(half - 1) < estimate.nbytes
    s.seek(half)
    assert 0.5 <= s.trace.kept_bytes(half - 1) / kept_bytes(s) <= 2
    s.run_to_end()
    assert 0.5 <= estimate.nbytes / kept_bytes(s) <= 2
    assert estimate.nodes == len(s.graph.ops) and estimate.gradients and estimate.dtype == dtype


def test_two_backends_keep_twice_and_copy_the_leaves() -> None:
    s = Session(wide(), get_backend("numpy", "float32"))
    one, two = s.trace.estimate(), s.trace.estimate(backends=2)
    leaves = 4 * sum(int(np.prod(n.shape)) for n in s.graph.leaves)
    assert two.nbytes == 2 * one.nbytes + leaves
    assert "2 backends" in two.refusal(one.nbytes) and "backends" not in one.refusal(one.nbytes)


@pytest.fixture
def wide_file(tmp_path: Path) -> Path:
    path = tmp_path / "wide.propscope"
    save_model(wide(), path)
    return path


def whole_pass_bytes(dtype: str = "float32") -> int:
    return Session(wide(), get_backend("numpy", dtype)).trace.estimate().nbytes


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused_in_one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_trace_over_the_budget_is_refused_in_one_line(capsys: pytest.CaptureFixture[str], wide_file: Path,
                                                         tmp_path: Path) -> None:
    out_path = tmp_path / "T.npz"
    need = whole_pass_bytes()
    code, _, err = run(capsys, "trace", str(wide_file), "--out", str(out_path), "--max-memory", str(need // 2))
    assert code == 2
    line = refused_in_one_line(err)
    assert line.startswith("propscope: error: ") and "a whole pass of wide keeps" in line
    assert "values and gradients of 6 nodes in float32); the memory budget is" in line
    assert f"--max-memory {allowing(need)}" in line and "a smaller batch or size" in line
    assert not out_path.exists()
    # the size it names allows it
    code, _, err = run(capsys, "trace", str(wide_file), "--out", str(out_path), "--max-memory", allowing(need))
    assert code == 0 and not err and out_path.exists()


def test_under_the_budget_runs_as_before(capsys: pytest.CaptureFixture[str], wide_file: Path, tmp_path: Path) -> None:
    out_path = tmp_path / "T.npz"
    code, out, err = run(capsys, "trace", str(wide_file), "--out", str(out_path),
                         "--max-memory", str(whole_pass_bytes() + 1))
    assert code == 0 and not err and "loss (mse)" in out
    with np.load(out_path) as trace:
        assert trace["value/tanh2"].shape == (ROWS, ROWS) and trace["grad/p"].shape == (1, ROWS)


def test_compare_counts_both_backends(capsys: pytest.CaptureFixture[str], wide_file: Path) -> None:
    one = whole_pass_bytes()
    code, out, err = run(capsys, "compare", str(wide_file), "--dtype", "float32", "--max-memory", str(int(one * 1.5)))
    assert code == 2 and not out
    assert "float32, 2 backends); the memory budget is" in refused_in_one_line(err)


def test_both_backends_are_counted_from_python_too() -> None:
    """`compare_backends` and the app's `diff_backends` meet the same check, where the second pass is made."""
    pytest.importorskip("torch")
    from propscope.debugger.compare import compare_backends
    from propscope.debugger.diff import diff_backends

    s = Session(wide(), get_backend("numpy", "float32"))
    set_max_memory(int(s.trace.estimate().nbytes * 1.5))  # one pass fits, two do not
    s.run_to_end()
    for compared in (compare_backends, diff_backends):
        with pytest.raises(PassMemoryError, match="2 backends"):
            compared(s, get_backend("torch", "float32"))


@pytest.mark.parametrize("command", [["gradcheck"], ["grads"], ["train", "--epochs", "2"],
                                     ["compare", "--device", "cpu"]])
def test_the_other_passes_are_refused_too(capsys: pytest.CaptureFixture[str], wide_file: Path,
                                          command: list[str]) -> None:
    code, _, err = run(capsys, command[0], str(wide_file), *command[1:], "--max-memory", "1M")
    assert code == 2
    line = refused_in_one_line(err)
    assert "the memory budget is 1.0 MiB: --max-memory" in line
    if command[0] == "gradcheck":
        assert "a gradient check of wide keeps" in line and "in float64" in line and "or a smaller batch" in line
    if command[0] == "train":
        assert "training wide keeps" in line


def test_stepping_the_first_ops_still_works() -> None:
    s = Session(wide(), get_backend("numpy", "float32"))
    set_max_memory(s.trace.kept_bytes(2))  # room for the first three forward steps, not for a fourth
    s.step()
    s.step()
    s.step()
    with pytest.raises(PassMemoryError, match=r"the first 4 of \d+ steps of wide keep "):
        s.step()
    assert s.cursor == 3 and s.trace.computed == 3  # refused before it ran; the session is as it was
    with pytest.raises(PassMemoryError, match="a whole pass of wide keeps"):
        s.run_to_end()
    assert s.cursor == 3 and s.trace.computed == 3
    s.step_back()
    assert s.cursor == 2


def test_continue_runs_as_far_as_the_budget_lets_it() -> None:
    s = Session(wide(), get_backend("numpy", "float32"))
    s.add_breakpoint("tanh0")
    set_max_memory(s.trace.kept_bytes(3))
    assert s.continue_() is not None and s.cursor == 2  # a breakpoint before the budget's end: no refusal
    with pytest.raises(PassMemoryError):
        s.continue_()
    assert s.trace.computed == 4


def test_training_in_mini_batches_keeps_its_share() -> None:
    s = Session(wide(), get_backend("numpy", "float32"))
    whole, quarter = s.training_memory(None).nbytes, s.training_memory(ROWS // 4).nbytes
    assert quarter < whole / 2
    assert "in batches of 64" in s.training_memory(ROWS // 4).refusal(1)
    assert scaled_by_batch(ROWS, None) is None and scaled_by_batch(ROWS, ROWS) is None
    set_max_memory(quarter + 1)
    with pytest.raises(PassMemoryError, match="training wide keeps"):
        s.train(epochs=1)
    s.train(epochs=1, batch_size=ROWS // 4)


def test_the_app_says_so_and_keeps_the_session(qtbot: Any) -> None:
    from propscope.gui.main_window import MainWindow

    s = Session(wide(), get_backend("numpy", "float32"))
    w = MainWindow(s, settings=None)
    qtbot.addWidget(w)
    s.step()
    set_max_memory(s.trace.kept_bytes(1))  # two steps' values: the first step twice and a copy of the leaves not
    w.debug.to_end.trigger()
    assert w.last_error is not None and w.last_error.startswith("a whole pass of wide keeps")
    assert w.bridge.session is s and s.cursor == 1
    assert "Stopped: a whole pass of wide" in w.status_message.text()
    assert w.compare_backends() is None  # the other backend's pass would not fit beside this one's
    assert w.last_error is not None and "2 backends" in w.last_error
    shown: list[str] = []
    w.show_error = lambda title, text: shown.append(text)  # type: ignore[method-assign]
    assert w.grad_flow.run() is None  # Debug ▸ Gradient flow says why it has none, not "an op ahead cannot run"
    assert len(shown) == 1 and "a whole pass of wide keeps" in shown[0]
    set_max_memory(None)
    w.debug.to_end.trigger()
    assert s.at_end
