"""How often the training plots may redraw: up to 30 times a second, but never more than a small share of time.

Drawing runs on the GUI thread and holds Python's GIL (PySide6 keeps it through QPainter calls), so
every millisecond spent painting plots is a millisecond the training worker cannot run. The
budget measures what a frame really costs (the update plus the paint that follows, timed in the
plots' own `paintEvent`) and spaces frames so that drawing takes at most `share` of the time. Costs
are the GUI thread's CPU time (`time.thread_time`), not wall time: on a busy machine the wall clock
also counts the moments the thread waited for a core or for the GIL, when it held nothing back.
"""

from __future__ import annotations

import time
from typing import Any

from ..guard import guarded

MAX_RATE_HZ = 30.0
MIN_RATE_HZ = 2.0  # however costly a frame, the plots move at least this often
SHARE = 0.04  # drawing may take 4% of the time while training runs


class FrameBudget:
    def __init__(self, share: float = SHARE, max_rate_hz: float = MAX_RATE_HZ,
                 min_rate_hz: float = MIN_RATE_HZ) -> None:
        self.share = share
        self.min_interval = 1.0 / max_rate_hz
        self.max_interval = 1.0 / min_rate_hz
        self.painted = 0.0  # paint time since the last frame
        self.cost = 0.0  # what a frame costs, update plus paint, smoothed over the last few
        self._next = 0.0

    def restart(self) -> None:
        """Forget paints from before (opening the window, resizing): a run starts with a clean slate."""
        self.painted = self.cost = self._next = 0.0

    def add_paint(self, seconds: float) -> None:
        self.painted += seconds

    def due(self, now: float | None = None) -> bool:
        return (time.perf_counter() if now is None else now) >= self._next

    def spent(self, seconds: float, now: float | None = None) -> None:
        """A frame's update took `seconds` of CPU; its paint is counted when it comes, with the next frame."""
        now = time.perf_counter() if now is None else now
        frame = seconds + self.painted
        self.cost = frame if self.cost == 0.0 else 0.7 * self.cost + 0.3 * frame
        self.painted = 0.0
        self._next = now + self.interval

    @property
    def interval(self) -> float:
        return min(self.max_interval, max(self.min_interval, self.cost / self.share))

    @property
    def rate_hz(self) -> float:
        return 1.0 / self.interval


def _metered_class() -> type:
    import pyqtgraph as pg  # here, not at the top: the first window draws no plot

    class MeteredPlotWidget(pg.PlotWidget):
        """A PlotWidget that reports how long its paints take to a FrameBudget."""

        def __init__(self, budget: FrameBudget | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.budget = budget

        @guarded
        def paintEvent(self, event: Any) -> None:
            start = time.thread_time()
            super().paintEvent(event)
            if self.budget is not None:
                self.budget.add_paint(time.thread_time() - start)

    return MeteredPlotWidget


def __getattr__(name: str) -> Any:
    """`MeteredPlotWidget`, made (with pyqtgraph's import) when first asked for."""
    if name == "MeteredPlotWidget":
        cls = _metered_class()
        globals()["MeteredPlotWidget"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
