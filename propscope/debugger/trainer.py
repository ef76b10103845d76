"""Training a Session: epochs of forward, backward and an optimizer step, live and controllable.

The loop runs on the backend's compiled program (no trace, no step records), so it costs about
what a hand-written loop costs. Per epoch it records the loss, the test loss and the metrics
into a `History` and emits `Session.loss_appended`. A `Trainer` can be paused, resumed and
stopped from another thread (the GUI trains on a worker). A NaN or Inf stops training; the batch
is then run once more through a `Trace` to name the op that produced it.

Epochs count from 0 as in the tutorial: epoch e's loss and metrics are measured on the
parameters before epoch e's update (with mini-batches: averaged over the epoch's batches), and
its test loss after it.

With `grad_norms=True` it also records each parameter's gradient norm per epoch (the mean over the
epoch's mini-batches), where vanishing and exploding gradients show; off by default, since on a
network as small as xor the norms cost a noticeable share of an epoch.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from ..backends import optimizer_for
from ..backends.optimizers import Optimizer
from ..graph.errors import PropscopeError
from ..graph.model import TARGET, fit_batch, output_node
from .data_checks import SUM_LOSSES  # summed over samples: an epoch's mini-batch losses add up
from .metrics import METRICS, accuracy_against
from .nonfinite import carried_in
from .snapshots import SnapshotRecorder, settings_from
from .steps import BACKWARD
from .trace import Trace

if TYPE_CHECKING:
    from ..graph.ir import Graph, Node
    from .session import Session

# The metric each loss is naturally reported with (the tutorial prints MSE beside its SSE objective).
METRIC_FOR_LOSS = {"mse": "mse", "sse": "mse", "bce": "accuracy", "cross_entropy": "accuracy"}


class TrainingError(PropscopeError):
    """Training settings that cannot work (zero epochs, no loss, a bad batch size), found before any work."""


class TrainingDiverged(TrainingError):
    """The loss became NaN or Inf; `nonfinite` says at which epoch and which op, `history` holds the rest."""

    def __init__(self, nonfinite: NonFinite, history: History) -> None:
        super().__init__(nonfinite.message)
        self.nonfinite = nonfinite
        self.history = history


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a History, as `loss_appended` carries it."""

    epoch: int
    loss: float
    test_loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    grad_norms: dict[str, float] = field(default_factory=dict)  # by parameter, when the trainer records them


def summed_loss_sizes(trainer: Trainer) -> tuple[int, int] | None:
    """(train, test) counts of the rows a summed loss (½·SSE) adds over, where a test set is scored beside it: the
    two sums are compared per row. The target's rows: a sample's, or a language model's token's. None otherwise."""
    if trainer.test_batch is None or trainer.session.loss_name not in SUM_LOSSES:
        return None
    return len(trainer.session.batch[TARGET]), len(trainer.test_batch[TARGET])


DIVERGED_ABOVE = 10.0  # a final loss this many times the first (and no NaN on the way) is a run that diverged


def run_health(losses: Sequence[float], grad_norms: Mapping[str, Sequence[float]] | None = None) -> str:
    """One clause on a run that went wrong without a NaN stopping it ("" when none did): a loss that ended far
    above where it began (diverging: the learning rate, usually), and parameters whose gradient has been exactly 0
    for the last epochs (dead units: every ReLU after them off), which a log-scale plot cannot draw."""
    said = []
    finite = [float(v) for v in losses if math.isfinite(float(v))]
    if len(finite) >= 2 and finite[-1] > DIVERGED_ABOVE * max(finite[0], 1e-12):
        said.append(f"the loss rose from {finite[0]:.4g} (the first epoch's) to {finite[-1]:.4g} (the last's): "
                    "training diverged (a smaller learning rate?)")
    dead = {}
    for name, norms in (grad_norms or {}).items():
        values = np.asarray(norms, dtype=np.float64)
        if len(values) >= 2 and values[-1] == 0 and np.any(values != 0):
            dead[name] = len(values) - 1 - int(np.flatnonzero(values != 0)[-1])  # the epochs of zeros at the end
    if dead:
        said.append(f"{', '.join(dead)} {'has' if len(dead) == 1 else 'have'} had no gradient at all for the last "
                    f"{min(dead.values())} epochs (dead units: the activations after them all off?)")
    return "; ".join(said)


@dataclass(frozen=True)
class NonFinite:
    """Where training met a NaN or Inf: the epoch (and mini-batch), and the op that first produced one."""

    epoch: int
    batch: int
    loss: float
    node: str | None
    op: str | None
    phase: str | None
    step: int | None  # index into the trace's schedule
    message: str


class History:
    """Per-epoch columns: `epoch`, `loss`, `test_loss` (only with a test batch), then one per metric.

    Columns are plain lists so that a plot can take them whole, and appending costs nothing.
    """

    def __init__(self, metrics: Sequence[str] = (), has_test: bool = False) -> None:
        self.metrics = tuple(metrics)
        self.has_test = has_test
        self.epoch: list[int] = []
        self.loss: list[float] = []
        self.test_loss: list[float] = []
        self.metric_values: dict[str, list[float]] = {m: [] for m in self.metrics}
        self.grad_norms: dict[str, list[float]] = {}  # parameter -> one norm per epoch (Trainer(grad_norms=True))
        self.nonfinite: NonFinite | None = None
        self.stopped = False  # stopped early by the user
        self.seconds = 0.0

    @property
    def columns(self) -> list[str]:
        return ["epoch", "loss", *(["test_loss"] if self.has_test else []), *self.metrics]

    def column(self, name: str) -> np.ndarray:
        if name == "epoch":
            return np.asarray(self.epoch, dtype=np.int64)
        if name == "loss":
            return np.asarray(self.loss)
        if name == "test_loss" and self.has_test:
            return np.asarray(self.test_loss)
        if name in self.metric_values:
            return np.asarray(self.metric_values[name])
        raise KeyError(f"no column {name!r}; columns: {', '.join(self.columns)}")

    def __len__(self) -> int:
        return len(self.loss)

    def __getitem__(self, i: int) -> EpochRecord:
        return EpochRecord(
            self.epoch[i],
            self.loss[i],
            self.test_loss[i] if self.has_test else None,
            {m: v[i] for m, v in self.metric_values.items()},
            {p: v[i] for p, v in self.grad_norms.items()},
        )

    @property
    def last(self) -> EpochRecord | None:
        return self[-1] if self.loss else None

    def to_csv(self, path: str | Path) -> Path:
        """One row per epoch, floats written with repr so that they read back exactly."""
        path = Path(path)
        cols = [self.epoch, self.loss, *([self.test_loss] if self.has_test else []),
                *(self.metric_values[m] for m in self.metrics)]
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.columns)
            writer.writerows(zip(*cols, strict=True))
        return path

    def __repr__(self) -> str:
        last = self.last
        tail = f", last loss {last.loss:.6g}" if last else ""
        return f"<History {len(self)} epochs{tail}>"


# -- metrics, evaluated with the target prepared once -------------------------------------------
def _metric_fn(name: str, y: np.ndarray, pred_shape: tuple[int, ...], loss: str | None = None
               ) -> Callable[[np.ndarray], float]:
    """`METRICS[name]` bound to the target; mse and accuracy without per-epoch copies of it. Accuracy takes the
    classes where `loss` does (`metrics.accuracy_against`: axis 1, as torch's cross-entropy)."""
    n = max(1, int(np.prod(pred_shape)))
    if name == "mse":
        target = np.asarray(y, dtype=np.float64).reshape(pred_shape)
        diff = np.empty(pred_shape, dtype=np.float64)

        def mse(pred: np.ndarray) -> float:
            np.subtract(target, pred, out=diff)
            return float(np.vdot(diff, diff)) / n

        return mse
    if name == "accuracy":
        return accuracy_against(y, pred_shape, loss)
    fn = METRICS[name]
    return lambda pred: fn(pred, y)


def _loss_and_grads(program: Any) -> Callable[[Mapping[str, Any], Sequence[str]], tuple[Any, dict[str, Any]]]:
    """The program's step; NumPy's skips its own np.errstate, which the trainer holds around the whole loop."""
    return getattr(program, "loss_and_grads_raw", program.loss_and_grads)


def _gather(names: Sequence[str]) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """grads -> the gradients in the order of `names`, gathered in C."""
    if len(names) == 1:
        return lambda grads: (grads[names[0]],)
    return itemgetter(*names)


def _copy(x: Any) -> Any:
    return x.copy() if isinstance(x, np.ndarray) else x.clone()


def _norm(x: Any, sqrt: Callable[[Any], float] = math.sqrt, vdot: Callable[..., Any] = np.vdot) -> float:
    """The L2 norm of a NumPy array or a torch tensor, as a float (vdot: the cheapest call on small arrays)."""
    if isinstance(x, np.ndarray):
        return sqrt(vdot(x, x))
    return float(x.norm())


def _is_finite(x: Any) -> bool:
    return bool(np.isfinite(x).all()) if isinstance(x, np.ndarray) else bool(x.isfinite().all())


class Trainer:
    """One training run of a Session; `run()` blocks, `pause()`/`resume()`/`stop()` may come from any thread.

    Every setting is checked in the constructor, before any work. The trainer updates its own two
    copies of the parameters in turn (the session's arrays, and any trace a viewer is reading,
    stay untouched until training ends or pauses), which also keeps the previous epoch's values
    for finding where a NaN came from.
    """

    state_changed = Signal(str)  # "running", "paused", "stopped", "finished", "diverged", "failed"

    def __init__(
        self,
        session: Session,
        epochs: int | None = None,
        optimizer: str | None = None,
        lr: float | None = None,
        batch_size: int | None = None,
        test: Mapping[str, np.ndarray] | None = None,
        seed: int | None = None,
        metrics: Sequence[str] | None = None,
        grad_norms: bool = False,
        snapshots: Any = None,
        hand_over: Callable[[dict[str, Any]], None] | None = None,
        **hparams: Any,
    ) -> None:
        defaults = session.model.training
        self.session = session
        self.epochs = _whole("epochs", defaults.epochs if epochs is None else epochs, low=1)
        size = defaults.batch_size if batch_size is None else batch_size
        self.batch_size = None if size is None else _whole("batch_size", size, low=1)
        self.seed = int(session.data_seed if seed is None else seed)  # mini-batch order: the session's seed by default
        if session.loss_node is None:
            raise TrainingError(f"{session.name} has no loss to train on; open it with a loss (mse, sse, bce, "
                                "cross_entropy)")
        self.names = [n.name for n in session.graph.parameters]
        if not self.names:
            raise TrainingError(f"{session.name} has no parameters to train")
        if session.model.decisions:  # readers/decisions.py: the path one input took, decided by values
            raise TrainingError(f"{session.name} was traced along the path its inputs take (its forward decided "
                                f"{len(session.model.decisions)} time(s) by tensor values, first at "
                                f"{session.model.decisions[0]}): a step that changes the weights may change the path, "
                                "so it is not trained here; train the module in torch and open it again")
        self.optimizer_name = defaults.optimizer if optimizer is None else optimizer
        # on torch, the real torch.optim class (same names, hyperparameters and step call)
        self.optimizer: Optimizer = optimizer_for(
            session.backend, self.optimizer_name, self.names, lr=defaults.lr if lr is None else lr, **hparams
        )
        self.metrics = tuple(dict.fromkeys(metrics if metrics is not None else _default_metrics(session)))
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise TrainingError(f"unknown metric {unknown[0]!r}; known metrics: {', '.join(METRICS)}")
        self.test_batch: dict[str, np.ndarray] | None = None
        self.test_graph: Graph | None = None
        if test is not None:
            self.test_batch, self.test_graph = session._prepare(session.model, test)
        if self.test_graph is not None and self.test_graph.output.op.name != session.graph.output.op.name:
            raise TrainingError("the test batch must be scored with the training loss")
        self.n, self.per_sample = self._sample_count(session.batch, session.graph)
        if self.batch_size is not None and self.batch_size >= self.n:
            self.batch_size = None  # one batch holding everything is full-batch training
        self.history = History(self.metrics, has_test=test is not None)
        if grad_norms:
            self.history.grad_norms = {name: [] for name in self.names}
        self._norms = list(self.history.grad_norms.values()) or None
        # Snapshots (debugger.snapshots): a count, epochs or SnapshotSettings; else what the session asks for (the app)
        wanted = settings_from(snapshots if snapshots is not None else getattr(session, "snapshot_settings", None))
        self.recorder = SnapshotRecorder(session, self.epochs, wanted) if wanted else None
        # The parameters reached so far, for a viewer on another thread (a live decision boundary): the
        # trainer overwrites these buffers an epoch later, so a reader copies them at once.
        self.latest: list[Any] = []
        # How the session receives parameters on pause and at the end. By default the trainer sets them itself;
        # an app passes a function that hands them to its GUI thread, so the session only changes there.
        self.hand_over = hand_over or self._set_session_params
        self._go = threading.Event()
        self._go.set()
        self._stop = False
        self.state = "ready"

    def _set_session_params(self, params: dict[str, Any]) -> None:
        self.session.set_params(params)
        self.session.params_changed.emit()

    # -- control, from any thread ------------------------------------------------------------
    def pause(self) -> None:
        """Stop after the current epoch and wait; the session shows the parameters reached so far."""
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    def stop(self) -> None:
        """End after the current epoch; the session keeps the parameters reached."""
        self._stop = True
        self._go.set()

    @property
    def paused(self) -> bool:
        return not self._go.is_set() and not self._stop

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)

    # -- set-up ------------------------------------------------------------------------------
    @staticmethod
    def _sample_count(batch: Mapping[str, np.ndarray], graph: Graph) -> tuple[int, int]:
        """How many samples the data holds, and how many rows of the target (and of the prediction) each has: 1, or
        a language model's tokens, whose logits and labels are read a row per token (T rows a sample)."""
        sizes = {n.name: np.shape(batch[n.name])[0] if np.ndim(batch[n.name]) else 1 for n in graph.inputs}
        samples = {v for k, v in sizes.items() if k != TARGET} or set(sizes.values())
        n = next(iter(samples), 1)
        target = sizes.get(TARGET, n)
        per = 1 if target == n else \
            target // n if n and target % n == 0 and output_node(graph).shape[:1] == (target,) else 0
        if len(samples) > 1 or not per:
            listed = ", ".join(f"{k} {v}" for k, v in sizes.items())
            raise TrainingError(f"the data arrays disagree on the number of samples ({listed})")
        return n, per

    def _target_rows(self, rows: np.ndarray) -> np.ndarray:
        """The target's (and the prediction's) rows of the samples `rows`: their tokens' rows, in order."""
        if self.per_sample == 1:
            return rows
        return (np.asarray(rows)[:, None] * self.per_sample + np.arange(self.per_sample)).ravel()

    def _rows_of(self, name: str, rows: np.ndarray) -> np.ndarray:
        return self._target_rows(rows) if name == TARGET else rows

    def _compile(self, graph: Graph, leaves: Mapping[str, Any]) -> tuple[Any, Callable[[], Any]]:
        """The graph's fast program, and a function giving the prediction of its last run on `leaves`.

        Programs that keep their values (NumPy) hand the prediction over for free; others run the
        prediction part of the graph once more.
        """
        program = self.session.backend.compile(graph)
        pred = output_node(graph).name
        value = getattr(program, "value", None)
        if value is not None:
            return program, partial(value, pred)
        g = graph.copy()
        g.set_outputs(output_node(g).name)
        return program, partial(self.session.backend.compile(g).predict, leaves)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> History:
        """Train; returns the history (also after stop() or a NaN: see `history.nonfinite`)."""
        if self.state != "ready":
            raise TrainingError("this trainer has already run; make a new one")
        s = self.session
        self._set_state("running")
        start = time.perf_counter()
        current = {name: _copy(s.params[name]) for name in self.names}
        spare = {name: _copy(s.params[name]) for name in self.names}
        if self.recorder is not None and self.recorder.due(0):
            self.recorder.record(0, current)
        try:
            with np.errstate(all="ignore"):
                if self.batch_size is None:
                    current, spare = self._full_batch(current, spare)
                else:
                    current, spare = self._mini_batches(current, spare)
        except BaseException:
            self._set_state("failed")  # the session keeps the parameters it had before training
            raise
        finally:
            self.history.seconds = time.perf_counter() - start
        if self.recorder is not None:
            self.recorder.finish(len(self.history), current if self.history.nonfinite is None else None,
                                 self.history.loss)
        if self.history.nonfinite is None:
            self.hand_over(current)
        self._set_state("diverged" if self.history.nonfinite else "stopped" if self._stop else "finished")
        return self.history

    def _prepare_metrics(self, y: Any, shape: tuple[int, ...]) -> list[tuple[list[float], Callable[..., float]]]:
        target = self.session.backend.to_numpy(y)
        return [(self.history.metric_values[m], _metric_fn(m, target, shape, self.session.loss_name))
                for m in self.metrics]

    def _test_eval(self) -> Callable[[dict[str, Any]], float] | None:
        if self.test_graph is None or self.test_batch is None:
            return None
        backend = self.session.backend
        program = backend.compile(self.test_graph)
        leaves = {n.name: backend.asarray(self.test_batch[n.name]) for n in self.test_graph.inputs}

        def evaluate(params: dict[str, Any]) -> float:
            leaves.update(params)
            return float(program.predict(leaves))

        return evaluate

    def _wait_if_paused(self, params: dict[str, Any]) -> None:
        if self._go.is_set():
            return
        self.hand_over({k: _copy(v) for k, v in params.items()})  # so the paused network can be stepped
        self._set_state("paused")
        self._go.wait()
        if not self._stop:
            self._set_state("running")

    def _full_batch(self, current: dict[str, Any], spare: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        s, h, names = self.session, self.history, self.names
        leaves = s._leaves()
        leaves.update(current)
        program, prediction = self._compile(s.graph, leaves)
        metrics = self._prepare_metrics(leaves[TARGET], output_node(s.graph).shape)
        test = self._test_eval()
        step = self.optimizer.step
        loss_and_grads = _loss_and_grads(program)
        emit = s.loss_appended.emit
        listeners = s.loss_appended
        to_numpy = s.backend.to_numpy
        cur = [current[n] for n in names]
        nxt = [spare[n] for n in names]
        go = self._go
        gather = _gather(names)
        norms = self._norms
        recorder = self.recorder
        for epoch in range(self.epochs):
            if self._stop:
                h.stopped = True
                break
            if not go.is_set():
                self._wait_if_paused(dict(zip(names, cur, strict=True)))
                if self._stop:
                    h.stopped = True
                    break
            loss, grads = loss_and_grads(leaves, names)
            loss_value = float(loss)
            if not math.isfinite(loss_value):
                return self._diverged(epoch, 0, loss_value, (s.graph, leaves), None, cur, nxt)
            if metrics:
                pred = to_numpy(prediction())
                for column, fn in metrics:
                    column.append(fn(pred))
            gathered = gather(grads)
            if norms is not None:
                for column, g in zip(norms, gathered):  # noqa: B905 (same length by construction; hot loop)
                    column.append(_norm(g))
            step(cur, gathered, nxt)
            cur, nxt = nxt, cur
            self.latest = cur
            if recorder is not None and recorder.due(epoch + 1):
                recorder.record(epoch + 1, dict(zip(names, cur, strict=True)))
            leaves.update(zip(names, cur, strict=True))
            h.epoch.append(epoch)
            h.loss.append(loss_value)
            if test is not None:
                h.test_loss.append(test(dict(zip(names, cur, strict=True))))
            if len(listeners):
                emit(h[-1])
        return dict(zip(names, cur, strict=True)), dict(zip(names, nxt, strict=True))

    def _mini_batches(self, current: dict[str, Any], spare: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        s, h, names, backend = self.session, self.history, self.names, self.session.backend
        size = self.batch_size
        assert size is not None
        inputs = [n.name for n in s.graph.inputs]
        data = {name: backend.asarray(s.batch[name]) for name in inputs}
        # one program (and one set of row buffers) per batch length: the full one and the remainder
        lengths = sorted({size, self.n % size} - {0}, reverse=True)
        runs = {}
        for length in lengths:
            counts = {k: length * (self.per_sample if k == TARGET else 1) for k in data}
            try:
                graph, constants = self._graph_of(counts)
            except PropscopeError as exc:
                if length == size:
                    raise
                # a file exported for batches of at least 2 (torch.export's default range) refuses a last batch of 1
                raise TrainingError(f"the last mini-batch holds {length} of the {self.n} samples, which the model "
                                    f"does not take ({exc}); pick a batch size that divides {self.n}, or train in "
                                    "full batches") from None
            buffers = {k: v[:counts[k]].clone() if not isinstance(v, np.ndarray) else np.empty_like(v[:counts[k]])
                       for k, v in data.items()}
            leaves = {**constants, **buffers, **current}
            program, prediction = self._compile(graph, leaves)
            runs[length] = (graph, _loss_and_grads(program), prediction, leaves)
        pred_shape = tuple(output_node(s.graph).shape)
        metrics = self._prepare_metrics(data[TARGET], pred_shape)
        predictions = np.empty(pred_shape, dtype=np.float64) if metrics else None
        test = self._test_eval()
        summed = s.loss_name in SUM_LOSSES
        rng = np.random.default_rng(self.seed)
        on_numpy = all(isinstance(v, np.ndarray) for v in data.values())
        cur = [current[n] for n in names]
        nxt = [spare[n] for n in names]
        previous_rows = np.arange(0)
        gather = _gather(names)
        for epoch in range(self.epochs):
            if self._stop:
                h.stopped = True
                break
            if not self._go.is_set():
                self._wait_if_paused(dict(zip(names, cur, strict=True)))
                if self._stop:
                    h.stopped = True
                    break
            order = rng.permutation(self.n)
            total = 0.0
            sums = None if self._norms is None else [0.0] * len(names)
            for b, first in enumerate(range(0, self.n, size)):
                rows = order[first:first + size]
                graph, loss_and_grads, prediction, leaves = runs[len(rows)]
                if on_numpy:
                    for k in inputs:
                        np.take(data[k], self._rows_of(k, rows), axis=0, out=leaves[k])
                else:
                    for k in inputs:
                        leaves[k][...] = data[k][backend.asarray(self._rows_of(k, rows))]
                for name, arr in zip(names, cur, strict=True):
                    leaves[name] = arr
                loss, grads = loss_and_grads(leaves, names)
                loss_value = float(loss)
                if not math.isfinite(loss_value):
                    before = partial(self._rows_leaves, data, previous_rows)
                    return self._diverged(epoch, b, loss_value, (graph, leaves), before, cur, nxt)
                total += loss_value if summed else loss_value * len(rows)
                if predictions is not None:
                    predictions[self._target_rows(rows)] = backend.to_numpy(prediction())
                gathered = gather(grads)
                if sums is not None:
                    for i, g in enumerate(gathered):
                        sums[i] += _norm(g)
                self.optimizer.step(cur, gathered, nxt)
                cur, nxt = nxt, cur
                self.latest = cur
                previous_rows = rows
            if predictions is not None:
                for column, fn in metrics:
                    column.append(fn(predictions))
            if sums is not None and self._norms is not None:
                batches = -(-self.n // size)
                for column, total_norm in zip(self._norms, sums, strict=True):
                    column.append(total_norm / batches)
            if self.recorder is not None and self.recorder.due(epoch + 1):
                self.recorder.record(epoch + 1, dict(zip(names, cur, strict=True)))
            h.epoch.append(epoch)
            h.loss.append(total if summed else total / self.n)
            if test is not None:
                h.test_loss.append(test(dict(zip(names, cur, strict=True))))
            if len(s.loss_appended):
                s.loss_appended.emit(h[-1])
        return dict(zip(names, cur, strict=True)), dict(zip(names, nxt, strict=True))

    def _rows_leaves(self, data: Mapping[str, Any], rows: np.ndarray) -> tuple[Graph, dict[str, Any]]:
        """The graph and input leaves of one mini-batch, built again (only when hunting a NaN)."""
        backend = self.session.backend
        on_numpy = all(isinstance(v, np.ndarray) for v in data.values())
        leaves = {k: v[self._rows_of(k, rows) if on_numpy else backend.asarray(self._rows_of(k, rows))]
                  for k, v in data.items()}
        graph, constants = self._graph_of({k: len(v) for k, v in leaves.items()})
        return graph, {**constants, **leaves}

    def _graph_of(self, rows: Mapping[str, int]) -> tuple[Graph, dict[str, Any]]:
        """The graph of a mini-batch with these rows of each input, and its constants (a position table, a mask):
        the session's graph fitted to them, or, where the file leaves sizes symbolic (`SizedModel`: a dynamic
        export, a transformers folder), the file read again at them, its constants made for those sizes."""
        s = self.session
        shapes = {k: (n, *np.shape(s.batch[k])[1:]) for k, n in rows.items()}
        model = s.model_at(shapes)
        if model is s.model:
            constants = {k: v for k, v in s.params.items() if k not in self.names}
            return fit_batch(s.graph, {k: np.broadcast_to(np.int8(0), v) for k, v in shapes.items()}), constants
        first = {k: np.asarray(s.batch[k])[:n] for k, n in rows.items()}
        _, graph = s._prepare(model, first)
        constants = {k: s.backend.asarray(v) for k, v in model.arrays.items() if k not in self.names}
        return graph, constants

    # -- a NaN or an Inf ---------------------------------------------------------------------
    def _diverged(
        self, epoch: int, batch: int, loss: float, here: tuple[Graph, Mapping[str, Any]],
        before: Callable[[], tuple[Graph, Mapping[str, Any]]] | None, cur: list[Any], previous: list[Any],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Name the op that first produced a non-finite value; leave the session on the parameters it saw.

        With finite parameters, this batch's own pass went wrong. Otherwise the previous update did,
        and the spare buffers still hold the parameters that update started from.
        """
        s, names = self.session, self.names
        where = f"epoch {epoch}" + (f", mini-batch {batch}" if self.batch_size else "")
        blamed_update = self.optimizer.steps > 0 and not all(_is_finite(p) for p in cur)
        params = dict(zip(names, previous if blamed_update else cur, strict=True))
        graph, leaves = before() if blamed_update and before is not None else here
        trace = Trace(graph, s.backend, {**leaves, **params})
        trace.compute_through(len(trace.schedule) - 1)
        node: Node | None = None
        phase = index = None
        message = f"training stopped at {where}: the loss is {loss}"
        if trace.first_nonfinite is not None:
            index, node = trace.first_nonfinite
            phase = trace.schedule[index].phase
            made_by = f"{node.op.name} {node.name!r} ({phase} step {index + 1}"
            held = carried_in(node, lambda name: s.backend.to_numpy(trace.values[name]) if name in trace.values
                              else None)
            if held:  # a NaN in the data (or a weight) is where it starts: the op only carries it on
                message += f"; {held} already held it, first met by {made_by})"
            elif blamed_update:
                message += (f"; the update before it used a non-finite gradient, first made by {made_by} "
                            "of the step before)")
            else:
                what = "gradient" if phase == BACKWARD else "value"
                message += f"; the first non-finite {what} is made by {made_by})"
        elif blamed_update:
            message += (f"; the {self.optimizer.name} update before it made the parameters non-finite "
                        "although every gradient was finite (try a smaller learning rate)")
        self.history.nonfinite = NonFinite(epoch, batch, loss, node.name if node else None,
                                           node.op.name if node else None, phase, index, message)
        self.hand_over({k: _copy(v) for k, v in params.items()})
        return dict(zip(names, cur, strict=True)), dict(zip(names, previous, strict=True))


def _whole(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TrainingError(f"{name} must be a whole number, got {value!r}")
    if value < low:
        raise TrainingError(f"{name} must be at least {low}, got {value}")
    return int(value)


def _default_metrics(session: Session) -> tuple[str, ...]:
    found = list(session.model.metrics)
    natural = METRIC_FOR_LOSS.get(session.loss_name or "")
    if natural and natural not in found:
        found.append(natural)
    return tuple(found)


def train(
    session: Session,
    epochs: int | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    test: Mapping[str, np.ndarray] | None = None,
    **options: Any,
) -> History:
    """`Session.train`: run a Trainer to the end; a NaN or Inf raises TrainingDiverged naming the op."""
    trainer = Trainer(session, epochs, optimizer, lr, batch_size, test, **options)
    history = trainer.run()
    if history.nonfinite is not None:
        raise TrainingDiverged(history.nonfinite, history)
    return history
