"""`StepRun` (debugger/stepping.py): Run to end and Continue taken a slice at a time end where the one-call moves end,
with the same numbers, and move the cursor once."""

from __future__ import annotations

import numpy as np
import pytest

import propscope
from propscope.debugger import NodeBreakpoint
from propscope.debugger.memory import PassMemoryError
from propscope.graph.readers import set_max_memory


def arrays_equal(a: propscope.Session, b: propscope.Session) -> None:
    for step in a.steps:
        name = step.node.name
        for got, want in ((a.value(name), b.value(name)), (a.grad(name), b.grad(name))):
            assert (got is None) == (want is None), name
            if got is not None:
                np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_run_in_slices_ends_where_run_to_end_does_moving_the_cursor_once():
    whole = propscope.open_session("cnn")
    whole.run_to_end()
    s = propscope.open_session("cnn")
    moves: list[int] = []
    s.cursor_moved.connect(moves.append)
    run = s.start_run()
    assert (run.total, run.done, run.over) == (len(s.steps), 0, False)
    slices = 0
    while not run.advance(0):  # no time at all: one step per slice
        slices += 1
        assert s.cursor == 0 and s.trace.computed == run.done == slices
    assert run.over and s.at_end and moves == [len(s.steps)]
    assert slices == len(s.steps) - 1  # the last slice computes the last step and moves the cursor
    arrays_equal(s, whole)


def test_halt_leaves_the_cursor_after_the_last_step_taken_and_a_second_run_goes_on_from_there():
    s = propscope.open_session("xor")
    run = s.start_run()
    for _ in range(5):
        run.advance(0)
    run.halt()
    assert run.over and s.cursor == 5
    again = s.start_run()
    assert again.total == len(s.steps) - 5 and again.done == 0
    assert again.advance() and s.at_end


def test_a_run_over_steps_already_computed_does_not_compute_them_again_and_going_back_is_immediate():
    s = propscope.open_session("xor")
    s.run_to_end()
    s.seek(2)
    records = list(s.trace.records)
    run = s.start_run()
    assert run.done == len(s.steps) - 2  # nothing left to compute: the next advance only moves the cursor
    assert run.advance(0) and s.at_end and s.trace.records == records
    back = s.start_run(3)
    assert back.total == 0 and back.advance(0) and s.cursor == 3


@pytest.mark.parametrize("phase", ["forward", "backward"])
def test_continue_in_slices_stops_where_continue_does(phase):
    want = propscope.open_session("classifier")
    got = propscope.open_session("classifier")
    node = want.steps[len(want.steps) // 3].node.name
    for s in (want, got):
        s.add_breakpoint(NodeBreakpoint(node, phase))
    stop = want.continue_()
    hits: list[object] = []
    got.breakpoint_hit.connect(hits.append)
    run = got.start_run(breakpoints=True)
    while not run.advance(0):
        assert got.cursor == 0
    assert stop is not None and run.stop is not None and str(run.stop) == str(stop)
    assert got.cursor == want.cursor and hits == [run.stop] and got.last_stop is run.stop
    arrays_equal(got, want)


def test_a_run_past_the_memory_budget_is_refused_before_any_step_is_computed():
    s = propscope.open_session("cnn")
    set_max_memory(1024)
    try:
        with pytest.raises(PassMemoryError, match="memory"):
            s.start_run()
    finally:
        set_max_memory(None)
    assert s.trace.computed == 0 and s.cursor == 0


def test_a_backend_prepared_aside_is_what_set_backend_installs_and_the_cursor_may_move_meanwhile():
    from propscope.backends import get_backend

    s = propscope.open_session("cnn")
    s.seek(5)
    float64 = get_backend("numpy", "float64", "cpu")
    prepared = s.prepare_backend(float64)  # what the app makes in a worker thread
    assert prepared.trace.computed == 5 and s.trace is not prepared.trace and str(s.backend.dtype) == "float32"
    s.seek(9)  # stepped on while it was made: set_backend computes the rest, on the prepared trace
    s.set_backend(float64, prepared)
    assert s.trace is prepared.trace and s.cursor == 9 and s.trace.computed == 9
    want = propscope.open_session("cnn")
    want.seek(9)
    want.set_backend(get_backend("numpy", "float64", "cpu"))  # made there and then, as it always was
    arrays_equal(s, want)


def test_a_backend_prepared_for_parameters_the_session_no_longer_has_is_made_again():
    from propscope.backends import get_backend

    s = propscope.open_session("xor")
    s.seek(4)
    float64 = get_backend("numpy", "float64", "cpu")
    prepared = s.prepare_backend(float64)
    s.set_params({"W1": s.params["W1"] * 2})  # trained meanwhile: the prepared pass is of the old weights
    s.seek(4)
    s.set_backend(float64, prepared)
    assert s.trace is not prepared.trace and s.cursor == 4
    np.testing.assert_array_equal(s.params["W1"], 2 * prepared.params["W1"])
