"""Training on from a scrubbed-back epoch: the run goes on from there, as one line of epochs.

Before the training dock starts a run, the timeline looks at what the session shows. Where that is
a recorded epoch k earlier than the last, the run branches at k: the snapshots after k are dropped
(the recorder then continues from k), the dock's log keeps only the epochs before k so the loss plot
goes on from k, and the optimizer's state (Adam's moments, momentum) is let go, because it belongs
to the later epoch, not to k. Plain SGD therefore continues exactly as one uninterrupted run would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...debugger.snapshots import truncate_after
from ...debugger.trainer import History


def rewind_to_shown_epoch(session: Any, runner: Any) -> str | None:
    """Branch the run at the epoch the session shows; the sentence saying so, or None where nothing changed."""
    snaps, epoch = session.snapshots, session.epoch
    if not snaps or epoch is None or epoch not in snaps or epoch >= snaps.epochs[-1]:
        return None
    dropped = truncate_after(snaps, epoch)
    _log_up_to(runner.log, epoch, snaps.loss)
    runner.epochs_done = epoch
    optimizer, runner.optimizer = runner.optimizer, None
    later = f"the {len(dropped)} recorded epoch{'s' if len(dropped) != 1 else ''} after it are dropped"
    # said, since the run then differs from an uninterrupted one: the snapshots hold parameters, not the state
    stateful = optimizer is not None and any(optimizer.state.get(name) for name in optimizer.names)
    afresh = f"; {optimizer.torch_class}'s running averages start again from zero" if stateful else ""
    return f"Training on from epoch {epoch}: {later}{afresh}"


def _log_up_to(log: Any, epoch: int, losses: list[float]) -> None:
    """The dock's log (`TrainingLog`) holding the epochs before `epoch` only, so the loss plot goes on from it.

    A log that has the run keeps its rows before `epoch` (they are the run's, grad norms and test loss
    included); an empty one (a run opened from a file) takes the recorded losses.
    """
    if log.n:
        log.n = int(np.searchsorted(log.x, epoch, side="left"))  # rows past n are overwritten by the next pull
        return
    if len(losses) >= epoch > 0:
        history = History()
        history.epoch = list(range(epoch))
        history.loss = [float(v) for v in losses[:epoch]]
        log.follow(history, 0)
        log.pull()
