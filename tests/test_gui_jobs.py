"""Jobs run off the GUI thread with the cyclic collector held off (a collection in the worker would finalise Qt
objects the GUI thread owns), and give it back on the GUI thread when the last one ends, or when its thread has."""

from __future__ import annotations

import gc
import threading

from propscope.gui import jobs
from propscope.gui.jobs import Job


def test_the_collector_is_held_off_while_a_job_runs_and_given_back(qtbot) -> None:
    assert gc.isenabled()
    seen = []
    go = threading.Event()

    def work() -> str:
        go.wait(10)
        seen.append(gc.isenabled())
        return "done"

    first, second = Job("first", work), Job("second", lambda: gc.isenabled())
    with qtbot.waitSignal(second.finished, timeout=10000) as quick:
        first.start()
        second.start()
    assert quick.args == [False] and not gc.isenabled()  # the first still runs
    with qtbot.waitSignal(first.finished, timeout=10000):
        go.set()
    assert seen == [False] and gc.isenabled() and not jobs._workers


def test_a_job_whose_result_never_comes_back_does_not_keep_the_collector_off(qtbot) -> None:
    """Its window went away: no _on_done. Once its thread has ended, the next job's start and end give the
    collector back."""
    orphan = Job("orphan", lambda: None)
    orphan._done.disconnect()  # as if the Job were gone before the queued result came
    orphan.start()
    assert orphan._worker is not None
    orphan._worker.join(10)
    assert not gc.isenabled()
    with qtbot.waitSignal((next_job := Job("next", lambda: 1)).finished, timeout=10000):
        next_job.start()
    assert gc.isenabled() and not jobs._workers
