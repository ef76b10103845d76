"""Debug > Gradient check: finite differences for every parameter, off the GUI thread, shown on the graph.

Each checked leaf (parameter or input) is marked with its relative error, and each op with the worst
error of the leaves it reads directly: a wrong derivative in an op shows on that op, not on everything
downstream. Green below 1e-7 (agreement to float64 noise), amber below 1e-4 (a kink or float32 weights),
red above. The inspector then shows the analytic and the numeric gradient side by side.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor

from ...graph.ir import Graph
from ..jobs import Job

if TYPE_CHECKING:
    from ...debugger.gradcheck import GradCheckResult

OK_BELOW = 1e-7
WARN_BELOW = 1e-4
GREEN, AMBER, RED, NO_DATA = "#2e9e44", "#f0a800", "#d62828", "#9e9e9e"


def gradcheck_color(error: float) -> QColor:
    if math.isnan(error):
        return QColor(NO_DATA)
    return QColor(GREEN if error < OK_BELOW else AMBER if error < WARN_BELOW else RED)


def verdict(error: float) -> str:
    return "agrees" if error < OK_BELOW else "close" if error < WARN_BELOW else "DISAGREES"


def judged_error(row: Any) -> float:
    """The relative error the colours judge: 0 where every entry agrees to what rounding in the loss alone could
    move its estimate (a vanishing gradient's relative error is noise, not a disagreement: `GradCheckRow.ok`)."""
    return 0.0 if getattr(row, "within_noise", False) else float(row.relative_error)


def node_errors(graph: Graph, results: Sequence[GradCheckResult]) -> dict[str, float]:
    """Every checked leaf's relative error, and for each op the worst error of the leaves it reads directly."""
    by_leaf = {r.row.name: judged_error(r.row) for r in results}
    errors = dict(by_leaf)
    for node in graph:
        read = [by_leaf[a.name] for a in node.inputs if a.name in by_leaf]
        if read and not node.is_leaf:
            errors[node.name] = max(read)
    return errors


class GradcheckRunner(QObject):
    """Runs the check in a `Job` with a progress dialog that counts leaves; Cancel stops it between leaves."""

    progressed = Signal(int, int, str)  # (leaves done, leaves in all, the leaf being checked), from the worker
    finished = Signal(object)  # list[GradCheckResult]

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.results: list[GradCheckResult] | None = None
        self.session: Any = None
        self.job: Job | None = None
        self.progressed.connect(self._progress, Qt.ConnectionType.QueuedConnection)
        window.bridge.sessionChanged.connect(lambda _s: self.clear())
        window.bridge.paramsChanged.connect(self.clear)  # trained: the check is of weights that are gone

    def run(self) -> Job | None:
        from ...debugger.gradcheck import default_samples, gradcheck_detailed  # when asked for, not at start

        w = self.window
        s = w.bridge.session
        if s.loss_node is None:
            w.show_error("Cannot check gradients", "gradient check needs a loss; this session runs forward only")
            return None
        from ...debugger.memory import gradcheck_estimate, leaf_elements
        from ...graph.errors import PropscopeError

        try:  # its float64 pass and copy of the leaves, refused before it runs where they would not fit
            gradcheck_estimate(s.trace.estimate(), leaf_elements(s.graph)).check(s.trace.budget.limit)
        except PropscopeError as exc:
            w.show_error("Cannot check gradients", str(exc))
            return None
        stop = threading.Event()
        # a real network's every entry is hours of forward passes: above the threshold, the command's sample
        samples = default_samples(s)

        def report(done: int, total: int, name: str) -> bool:
            self.progressed.emit(done, total, name)
            return not stop.is_set()

        what = "" if samples is None else f", {samples} entries of each tensor"
        job = Job(f"Gradient check (central differences, float64{what})…",
                  lambda: gradcheck_detailed(s, progress=report, samples=samples, cancelled=stop.is_set), w)
        job.cancelled.connect(stop.set)
        self.job = job

        def done(results: list[GradCheckResult]) -> None:
            if w.bridge.session is s:
                self.show(s, results)

        return w._start(job, done, "Cannot check gradients")

    def _progress(self, done: int, total: int, name: str) -> None:
        job = self.job
        if job is not None and job.dialog is not None:
            job.dialog.setRange(0, total)
            job.dialog.setValue(done)
            job.dialog.setLabelText(f"Gradient check: {name} ({done + 1} of {total})")

    def show(self, session: Any, results: list[GradCheckResult]) -> None:
        w = self.window
        self.session, self.results = session, results
        w.canvas.set_diffs(node_errors(session.graph, results), gradcheck_color)
        w.inspector.set_gradcheck({r.row.name: r for r in results})
        if results:
            worst = max(results, key=lambda r: judged_error(r.row))
            rounding = sum(r.row.within_noise and r.row.relative_error >= OK_BELOW for r in results)
            sampled = max((r.row.elements for r in results if r.entries is not None), default=0)
            w.message(f"Gradient check: {len(results)} leaves"
                      + (f" ({sampled} entries of each large one)" if sampled else "")
                      + f", worst {worst.row.name} relative error "
                      f"{worst.row.relative_error:.2e} ({verdict(judged_error(worst.row))})"
                      + (f"; {rounding} agree only to the loss's own rounding (too small to check further)"
                         if rounding else "")
                      + (f": {worst.row.nonfinite_text()}" if worst.row.nonfinite_text() else ""))
        self.finished.emit(results)

    def clear(self) -> None:
        if self.results is None:
            return
        self.results = None
        self.window.canvas.set_diffs(None)
        self.window.inspector.set_gradcheck(None)


def attach_gradcheck(window: Any) -> GradcheckRunner:
    """Debug ▸ Gradient check (Ctrl+G) for `window`."""
    runner = GradcheckRunner(window)
    menu = window.debug_menu
    menu.addSeparator()
    action = window._menu_action(menu, "&Gradient check", "Ctrl+G", runner.run)
    action.setToolTip("Finite differences for every parameter; nodes coloured by their worst relative error")
    window.gradcheck_action = action
    return runner


def results_by_name(results: Sequence[GradCheckResult] | None) -> Mapping[str, GradCheckResult]:
    return {r.row.name: r for r in results or ()}
