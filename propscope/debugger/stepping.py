"""`StepRun`: a move of the cursor that may take long, taken a slice at a time.

Run to the end, Continue to a breakpoint and going to a far step compute every step on the way: seconds on a
real-size network (DeepLabV3-ResNet50 at 224×224: 7 s on the NumPy backend). Taken in one call, that froze the
app's window. A `StepRun` computes steps for about as long as its caller gives it (`advance`) and says whether it is
over, so a caller with an event loop runs it between events, shows how far it got and can stop it. The cursor moves
once, when the run is over or stopped, so views refresh once rather than at every step. It knows no Qt.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from .breakpoints import Stop

if TYPE_CHECKING:
    from .session import Session


class StepRun:
    """Toward step `target` (a cursor position; the end by default), or with `breakpoints` as Continue: until a step
    hits a breakpoint (the cursor then just after it, `stop` says why) or the end.

    `advance(seconds)` computes steps until that much time has passed (at least one step), and returns True once
    the run is over; `halt()` ends it early, the cursor after the last step it took. An error computing a step (an op
    that cannot run) propagates from `advance` with the run over and the cursor where it was. With `move=False` the
    steps are computed ahead and the cursor stays (what explaining a gradient needs: the whole pass)."""

    def __init__(self, session: Session, target: int | None = None, breakpoints: bool = False,
                 move: bool = True) -> None:
        self.session = session
        last = len(session.steps)
        self.target = last if target is None else max(0, min(int(target), last))
        self.breakpoints = breakpoints
        self.move = move
        self.start = session.cursor
        # Continue looks at every step from the cursor; a plain move need not revisit steps already computed
        self.next = self.start if breakpoints else max(self.start, min(self.target, session.trace.computed))
        self.stop: Stop | None = None
        self.over = False
        if not breakpoints and self.target > self.start:  # refused before any of it runs, as `seek` refuses
            session.trace.check_fits(self.target - 1)

    @property
    def total(self) -> int:
        """The steps this run goes through (for progress)."""
        return max(0, self.target - self.start)

    @property
    def done(self) -> int:
        """The steps it has gone through so far."""
        return max(0, self.next - self.start)

    def advance(self, seconds: float = math.inf) -> bool:
        deadline = time.perf_counter() + seconds
        s = self.session
        while not self.over:
            if self.next >= self.target:
                self._finish(self.target)
                break
            try:
                step = s.trace.record(self.next)  # computed now if it was not
            except BaseException:
                self.over = True
                raise
            self.next += 1
            if self.breakpoints:
                reason, bp = s._check(step)
                if reason is not None:
                    self.stop = Stop(reason, step, bp)
                    self._finish(self.next)
                    s.last_stop = self.stop
                    s.breakpoint_hit.emit(self.stop)
                    break
            if self.next < self.target and time.perf_counter() >= deadline:
                break
        return self.over

    def halt(self) -> None:
        """Stop here: the cursor goes to just after the last step this run took (for Continue: looked at)."""
        if not self.over:
            self._finish(self.next)

    def _finish(self, cursor: int) -> None:
        self.over = True
        if self.move and cursor != self.session.cursor:
            self.session.seek(cursor)
