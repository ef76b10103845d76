"""Training from the app: `Trainer` runs on a worker thread, controlled and observed from the GUI thread.

The runner starts one trainer at a time (Play, one epoch, one batch), pauses, resumes and stops it,
and keeps what must outlive a single run: the optimizer (so Adam's moments carry over from Play to
Play, as they would in one long run), the initial parameters (for Reset) and the training log the
plots read. The log is pulled from the trainer's history by a timer at the screen's rate, never
per epoch, so a fast network trains at nearly its headless speed. Nothing here touches a widget:
the trainer's state changes reach this thread through the bridge, its end through a queued signal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from ...debugger import Session
from ...debugger.memory import current_budget
from ...debugger.trainer import Trainer, summed_loss_sizes
from ...graph.errors import PropscopeError
from ..bridge import SessionBridge
from .log import TrainingLog

PULL_INTERVAL_MS = 33  # ~30 Hz: the plots never refresh faster, whatever the epoch rate
ACTIVE = ("running", "paused")


@dataclass
class RunSettings:
    """What the training dock asks for; `hparams` holds the optimizer's hyperparameters, lr included."""

    optimizer: str
    hparams: dict[str, Any]
    epochs: int
    batch_size: int | None = None  # None: the whole batch each step
    test: Mapping[str, np.ndarray] | None = None
    grad_norms: bool = True  # record each parameter's gradient norm per epoch (the gradient-health plot)
    extra: dict[str, Any] = field(default_factory=dict)


def _copy(x: Any) -> Any:
    return x.copy() if isinstance(x, np.ndarray) else x.clone()


class TrainingRunner(QObject):
    stateChanged = Signal(str)  # idle, running, paused, finished, stopped, diverged, failed
    progressed = Signal()  # the trainer went on (at most ~30 times a second): time to pull() and draw, if due
    diverged = Signal(object)  # the trainer's NonFinite: the epoch, the op, the message
    failed = Signal(str)  # a sentence: bad settings, or an error in the run
    _done = Signal(object, object, object)  # (trainer, history, error), emitted on the worker
    _hand_over = Signal(object, object)  # (session, parameters) from the worker, applied on the GUI thread

    def __init__(self, bridge: SessionBridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.log = TrainingLog()
        self.state = "idle"
        self.trainer: Trainer | None = None
        self.optimizer: Any = None
        self.epochs_done = 0
        self.rate = 0.0  # epochs per second of the current run
        self.note: str | None = None  # what the last run did when it was not whole epochs (one mini-batch)
        self._thread: threading.Thread | None = None
        self._after: Callable[[], None] | None = None  # what to do once the current run has ended
        self._scratch: Session | None = None  # the one-batch run's session, holding only that batch
        self._origin: Session | None = None  # the session a one-batch run steps
        self._rows: np.ndarray = np.arange(0)
        self._rng = np.random.default_rng(0)
        self._rate_mark = (0.0, 0)
        self.timer = QTimer(self)
        self.timer.setInterval(PULL_INTERVAL_MS)
        self.timer.timeout.connect(self._tick)
        self._done.connect(self._finished, Qt.ConnectionType.QueuedConnection)
        self._hand_over.connect(self._apply_params, Qt.ConnectionType.QueuedConnection)
        bridge.trainingState.connect(self._trainer_state)
        bridge.sessionChanged.connect(self._session_changed)
        self._session: Session | None = None
        self._session_changed(bridge.session)

    @property
    def busy(self) -> bool:
        return self._thread is not None

    # -- the session ---------------------------------------------------------------------------
    def _session_changed(self, session: Session) -> None:
        """A new session starts afresh; the same one with new data keeps its log and optimizer."""
        if session is self._session:
            return
        if self.busy:
            self._after = lambda: self._session_changed(self.bridge.session)
            self.stop()
            return
        self._session = session
        self.initial = session.parameters_numpy()  # NumPy, so Reset works after a switch of backend too
        self._forget()

    def _forget(self) -> None:
        self.optimizer = None
        self.epochs_done = 0
        self._rows = np.arange(0)
        self.log.clear()
        self._set_state("idle")
        self.progressed.emit()

    # -- controls --------------------------------------------------------------------------------
    def play(self, settings: RunSettings) -> bool:
        """Resume a paused run, or start one of `settings.epochs` epochs."""
        if self.state == "paused" and self.trainer is not None:
            self.trainer.resume()
            return True
        return self._start(self.bridge.session, settings, settings.epochs)

    def pause(self) -> None:
        if self.trainer is not None and self.state == "running":
            self.trainer.pause()

    def stop(self) -> None:
        if self.trainer is not None and self.busy:
            self.trainer.stop()

    def step_epoch(self, settings: RunSettings) -> bool:
        """One more epoch: a paused run lets exactly one through; otherwise a one-epoch run."""
        if self.state == "paused" and self.trainer is not None:
            self.trainer.resume()
            self.trainer.pause()  # the trainer wakes, trains one epoch, and sees the pause before the next
            return True
        return not self.busy and self._start(self.bridge.session, settings, 1)

    def step_batch(self, settings: RunSettings) -> bool:
        """One optimizer step on the next mini-batch (the whole batch without mini-batches)."""
        s = self.bridge.session
        n = len(next(iter(s.batch.values()))) if s.batch else 0
        size = settings.batch_size
        if size is None or size >= n:
            return self.step_epoch(settings)
        if self.busy:
            if self.state != "paused":
                return False
            self._after = lambda: self.step_batch(settings)  # end the paused run, then take the step
            self.stop()
            return True
        if len(self._rows) < size:
            self._rows = self._rng.permutation(n)
        rows, self._rows = self._rows[:size], self._rows[size:]
        batch = {k: np.asarray(v)[rows] for k, v in s.batch.items()}
        try:
            scratch = Session(s.model, s.backend, batch, loss=s.loss_name, name=s.name)
        except PropscopeError as exc:
            self.failed.emit(str(exc))
            return False
        scratch.params = dict(s.params)
        self._scratch, self._origin = scratch, s
        one = RunSettings(settings.optimizer, settings.hparams, 1, None, None, grad_norms=False)
        return self._start(scratch, one, 1)

    def reset(self) -> None:
        """Back to the parameters the session opened with; the log and the optimizer's state are dropped."""
        if self.busy:
            self._after = self.reset
            self.stop()
            return
        s = self.bridge.session
        s.set_params({k: s.backend.asarray(v.copy()) for k, v in self.initial.items()})
        self._forget()

    def _apply_params(self, session: Session, params: dict[str, Any]) -> None:
        """The trainer's parameters (on pause, at the end), given to the session here on the GUI thread."""
        session.set_params(params)
        session.params_changed.emit()

    def set_hparams(self, hparams: Mapping[str, Any]) -> None:
        """New hyperparameters (a learning rate typed mid-run) take effect from the next step."""
        if self.optimizer is not None:
            self.optimizer.hparams.update(hparams)

    def latest_params(self) -> dict[str, Any] | None:
        """A copy of the running trainer's parameters, or None when the session already has them."""
        t = self.trainer
        if t is None or self.state != "running" or self._scratch is not None:
            return None
        latest = t.latest
        if len(latest) != len(t.names):
            return None
        return {name: _copy(v) for name, v in zip(t.names, latest, strict=True)}

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop and wait for the worker (the window is closing)."""
        self._after = None
        thread = self._thread
        if thread is not None and self.trainer is not None:
            self.trainer.stop()
            thread.join(timeout)
        self.timer.stop()
        self.bridge.mute_losses(False)

    # -- the run -----------------------------------------------------------------------------------
    def _start(self, session: Session, settings: RunSettings, epochs: int) -> bool:
        hp = dict(settings.hparams)
        lr = hp.pop("lr", None)
        try:
            session.training_memory(settings.batch_size).check(current_budget())  # before a step can exhaust it
            trainer = Trainer(session, epochs, settings.optimizer, lr, settings.batch_size, settings.test,
                              grad_norms=settings.grad_norms, hand_over=partial(self._hand_over.emit, session),
                              **hp, **settings.extra)
        except PropscopeError as exc:
            self._scratch = None
            self.failed.emit(str(exc))
            return False
        kept, fresh = self.optimizer, trainer.optimizer
        if (kept is not None and type(kept) is type(fresh) and kept.name == fresh.name
                and list(kept.names) == list(fresh.names)):
            kept.hparams.update(fresh.hparams)  # checked by the fresh one; the state (moments) carries over
            trainer.optimizer = kept
        else:
            self.optimizer = fresh
        self.trainer = trainer
        self.note = None
        self.bridge.watch_trainer(trainer)
        self.bridge.mute_losses(True)
        if self._scratch is None:
            self.log.follow(trainer.history, self.epochs_done, summed_loss_sizes(trainer))
        self._rate_mark = (time.perf_counter(), 0)
        self.rate = 0.0
        thread = threading.Thread(target=self._work, args=(trainer,), name="propscope: training", daemon=True)
        self._thread = thread
        self._set_state("running")
        thread.start()
        self.timer.start()
        return True

    def _work(self, trainer: Trainer) -> None:
        """On the worker: train, then hand the result to the GUI thread."""
        try:
            history = trainer.run()
        except Exception as exc:  # shown in the dock; the session keeps its parameters
            self._done.emit(trainer, trainer.history, exc)
        else:
            self._done.emit(trainer, history, None)

    def _tick(self) -> None:
        """Say that the trainer went on; copying its history is left to `pull`, for the frames that draw it."""
        trainer = self.trainer
        if self._scratch is not None or trainer is None:
            return
        t0, n0 = self._rate_mark
        now, n = time.perf_counter(), len(trainer.history)
        if now - t0 >= 0.5:
            self.rate = (n - n0) / (now - t0)
            self._rate_mark = (now, n)
        self.progressed.emit()

    def pull(self) -> int:
        """Bring the log up to date with the running trainer's history; how many epochs it added."""
        return 0 if self._scratch is not None else self.log.pull()

    def _trainer_state(self, trainer: Any, state: str) -> None:
        if trainer is self.trainer and state in ACTIVE and self.busy:
            self._set_state(state)

    def _finished(self, trainer: Trainer, history: Any, error: BaseException | None) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self.timer.stop()
        self.bridge.mute_losses(False)
        scratch, self._scratch = self._scratch, None
        if scratch is None:
            self.log.pull()
            self.epochs_done += len(history)
            if history.seconds > 0 and len(history):
                self.rate = len(history) / history.seconds
        elif error is None and history.nonfinite is None and self.bridge.session is self._origin:
            self.bridge.session.set_params(scratch.params)
            last = history.last
            if last is not None:
                self.note = f"One mini-batch of {len(next(iter(scratch.batch.values())))}: loss {last.loss:.4g}."
        if error is not None:
            self._set_state("failed")
            self.failed.emit(str(error) if isinstance(error, PropscopeError) else f"{type(error).__name__}: {error}")
        elif history.nonfinite is not None:
            self._set_state("diverged")
            self.diverged.emit(history.nonfinite)
        else:
            self._set_state(trainer.state if trainer.state in ("finished", "stopped") else "finished")
        self.progressed.emit()
        after, self._after = self._after, None
        if after is not None:
            after()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.stateChanged.emit(state)

