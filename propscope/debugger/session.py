"""`Session`: the debugger a person drives, from the app, a terminal or a notebook. It knows no Qt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from ..backends import Backend, get_backend
from ..graph.datasets import DataError, image_batch, is_image, load_data, normalization_for
from ..graph.errors import GraphError, ShapeError
from ..graph.ir import Graph, Node
from ..graph.model import (
    TARGET,
    Model,
    attach_loss,
    class_axis,
    class_indices_shape,
    example_batch,
    fit_batch,
    output_node,
    target_name_freed,
)
from ..graph.ops.losses import IGNORE_INDEX
from ..graph.ops.shapes import fmt
from ..graph.readers import SizedModel, reading_at
from ..graph.readers.sizes import switched_by, switches_changed
from ..graph.readers.snapshots import attached as attached_snapshots
from .breakpoints import Breakpoint, NodeBreakpoint, NonFiniteBreakpoint, Stop
from .data_checks import check_targets, class_count_error, one_hot_error
from .memory import PassEstimate, current_budget, training_estimate
from .stepping import StepRun
from .steps import FORWARD, PlannedStep, Step
from .trace import Trace, gradient_reaches


@dataclass(frozen=True)
class BackendTrace:
    """A session's pass made ready on another backend (`Session.prepare_backend`): its parameters there, and its
    trace up to the cursor; `source` is the session's parameters it was made from."""

    backend: Backend
    source: dict[str, Any]
    params: dict[str, Any]
    trace: Trace


class Session:
    """Graph + backend + batch + loss + trace + cursor.

    The cursor counts the steps taken: `cursor == 0` before the first step, and the step just
    taken is `steps[cursor - 1]`. Events fire after every change, possibly on a worker thread.
    """

    cursor_moved = Signal(int)
    trace_changed = Signal()
    breakpoint_hit = Signal(object)
    loss_appended = Signal(object)
    params_changed = Signal()
    breakpoints_changed = Signal()

    def __init__(
        self,
        model: Model,
        backend: Backend,
        batch: Mapping[str, np.ndarray] | None = None,
        loss: str | None = None,
        name: str = "",
        seed: int = 0,
    ) -> None:
        self.loss_name = model.loss if loss is None else (None if loss == "none" else loss)
        if batch is not None:  # a file exported with dynamic sizes is read at the data's
            model = _at_data_sizes(model, _by_file_names(model, batch, self.loss_name is not None))
        if self.loss_name is not None:  # a node of the model named `y`, the target's name, gives way (y_model)
            model = model.renamed(target_name_freed(model.graph))
        labels = (model.batch if batch is None else batch).get(TARGET)
        if self.loss_name == "cross_entropy" and labels is not None:
            model = _rows_for_token_labels(model, np.shape(labels))
        self.model = model
        self._models_at: dict[Any, Model] = {}  # model_at's last few
        self.backend = backend
        self.name = name or model.graph.name
        # what it was opened from: an example's name or a file's path ("" for a Model made in code)
        self.source = ""
        self.data_seed = seed  # what a generated batch was drawn with (with_loss draws a target so)
        # whether the target `y` was drawn here (no data gave one): another loss or output draws its own again
        self.target_drawn = False
        self.loss_from_labels = False  # whether open_session chose the loss from the data's labels (the model had none)
        # (the labels' shape, the output's) where y was read in the output's shape though torch's loss would have
        # broadcast the two to another ((N,) against (N, 1) → (N, N)): the command line notes it
        self.target_reshaped: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        drawn_in_file = batch is None and model.target_drawn  # a saved session's target it drew, not the user's
        if batch is None:  # a loaded model without data gets a generated batch of its declared shapes
            self.target_drawn = self.loss_name is not None and (TARGET not in model.batch or drawn_in_file)
            batch = example_batch(model.graph, seed, self.loss_name, model.batch)
        # the labels the data gave, as given, whatever the loss: Debug ▸ Loss comes back to them for any loss they
        # fit, though one they do not fit drew a target of its own meanwhile (`_remade`); File ▸ Save keeps them
        self.user_labels = None if self.target_drawn or drawn_in_file else _labels_in(model, batch)
        self.batch, self.graph = self._prepare(model, batch)
        self._data_dtypes = _whole_number_dtypes(model, batch)  # what saved_model gives the data back in
        self.params: dict[str, Any] = {k: backend.asarray(v) for k, v in model.arrays.items()}
        self.breakpoints: list[Breakpoint] = []
        self._break_on_nonfinite = False
        self.last_stop: Stop | None = None
        self._cursor = 0
        self.trace = self._new_trace()
        self._reached: set[str] = set()  # the nodes a gradient from the loss reaches (gradient_flows), per loss
        self._reached_for: Node | None = None
        self.snapshots: Any = attached_snapshots(model)  # a training run's recorded epochs (debugger.snapshots)
        self.epoch: int | None = None  # the recorded epoch shown, after at_epoch
        self._step_of: tuple[list[PlannedStep], dict[tuple[str, str], int]] | None = None  # node_phase_index's

    # -- set-up ----------------------------------------------------------------------------
    def _prepare(self, model: Model, batch: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Graph]:
        batch = dict(batch)
        inputs = model.graph.inputs
        if len(inputs) == 1 and inputs[0].name not in batch and "x" in batch:
            batch[inputs[0].name] = batch.pop("x")  # `x` always names the single input
        for name, arr in batch.items():
            arr = np.asarray(arr)
            if arr.dtype.kind not in "biuf":
                raise DataError(f"data array {name!r} holds {arr.dtype} values, not numbers")
            # whole-number data (the tutorial's X and y are ints) is still data in the session's float dtype;
            # class indices for cross-entropy are made integers again by _class_targets
            batch[name] = arr.astype(np.float64) if arr.dtype.kind in "biu" else arr
        graph = fit_batch(model.graph, batch)
        if self.loss_name is None:
            return batch, graph
        if TARGET not in batch:
            raise DataError(
                f"the data has no target array {TARGET!r} for the {self.loss_name} loss; add it or use loss 'none'"
            )
        pred = output_node(graph).shape
        y = batch[TARGET]
        raw_shape = y.shape
        if self.loss_name == "cross_entropy":
            y = _class_targets(y, pred)
        elif y.shape != pred and y.size == int(np.prod(pred)):
            y = y.reshape(pred)
            self.target_reshaped = (tuple(raw_shape), tuple(pred)) if _broadcasts_otherwise(raw_shape, pred) else None
        check_targets(y, output_node(graph), self.loss_name, raw_shape)
        batch[TARGET] = y
        try:
            return batch, attach_loss(graph, self.loss_name, y.shape)
        except ShapeError as exc:
            raise ShapeError(f"target {TARGET!r}: {exc}") from None

    def _leaves(self, backend: Backend | None = None, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every leaf's value on `backend` (the session's own by default): parameters, then the batch."""
        backend = backend or self.backend
        leaves = dict(self.params if params is None else params)
        for node in self.graph.inputs:
            leaves[node.name] = backend.asarray(self.batch[node.name])
        return leaves

    def _new_trace(self) -> Trace:
        return Trace(self.graph, self.backend, self._leaves(), self.name)

    # -- the schedule and the cursor -------------------------------------------------------
    @property
    def steps(self) -> list[PlannedStep]:
        return self.trace.schedule

    @property
    def cursor(self) -> int:
        return self._cursor

    @property
    def n_forward(self) -> int:
        return self.trace.n_forward

    @property
    def at_end(self) -> bool:
        return self._cursor >= len(self.steps)

    @property
    def current(self) -> Step | None:
        """The step just taken, or None at the start."""
        return self.trace.record(self._cursor - 1) if self._cursor else None

    def _move(self, cursor: int) -> None:
        cursor = max(0, min(cursor, len(self.steps)))
        if cursor:
            self.trace.compute_through(cursor - 1)
        if cursor != self._cursor:
            self._cursor = cursor
            self.cursor_moved.emit(cursor)

    def step(self) -> Step | None:
        """Take the next step and return its record (None at the end)."""
        if self.at_end:
            return None
        self._move(self._cursor + 1)
        return self.current

    def step_back(self) -> Step | None:
        """Undo the last step exactly; returns the step now current (None at the start)."""
        self._move(self._cursor - 1)
        return self.current

    def reset(self) -> None:
        self._move(0)

    def run_to_end(self) -> None:
        self._move(len(self.steps))

    def seek(self, cursor: int) -> None:
        self._move(cursor)

    def run_to(self, node: str | Node, phase: str = FORWARD) -> Step:
        """Move so that the step of `node` in `phase` is the one just taken (back or forth)."""
        name = node if isinstance(node, str) else node.name
        self.graph[name]
        for s in self.steps:
            if s.node.name == name and s.phase == phase:
                self._move(s.index + 1)
                return self.trace.record(s.index)
        raise GraphError(f"no {phase} step for node {name!r}")

    def continue_(self) -> Stop | None:
        """Step until a breakpoint is hit (returned) or the end is reached (None)."""
        run = self.start_run(breakpoints=True)
        run.advance()
        return run.stop

    def start_run(self, target: int | None = None, breakpoints: bool = False, move: bool = True) -> StepRun:
        """A move to cursor position `target` (default: the end), or with `breakpoints` Continue's, to be taken a
        slice at a time by a caller that must stay responsive (the app): see `StepRun`. `move=False` computes the
        steps without moving the cursor."""
        return StepRun(self, target, breakpoints, move)

    def _check(self, step: Step) -> tuple[str | None, Breakpoint | None]:
        checks = list(self.breakpoints)
        if self.break_on_nonfinite:
            checks.insert(0, NonFiniteBreakpoint())
        for bp in checks:
            reason = bp.hit(step, self.backend)
            if reason:
                return reason, bp
        return None, None

    # -- breakpoints -----------------------------------------------------------------------
    @property
    def break_on_nonfinite(self) -> bool:
        """Stop at the first op whose value or gradient holds NaN or Inf."""
        return self._break_on_nonfinite

    @break_on_nonfinite.setter
    def break_on_nonfinite(self, on: bool) -> None:
        if bool(on) != self._break_on_nonfinite:
            self._break_on_nonfinite = bool(on)
            self.breakpoints_changed.emit()

    def add_breakpoint(self, bp: Breakpoint | str, phase: str | None = None) -> Breakpoint:
        if isinstance(bp, str):
            self.graph[bp]
            bp = NodeBreakpoint(bp, phase)
        if bp not in self.breakpoints:
            self.breakpoints.append(bp)
            self.breakpoints_changed.emit()
        return bp

    def remove_breakpoint(self, bp: Breakpoint | str) -> None:
        kept = [b for b in self.breakpoints if b != bp and getattr(b, "node", None) != bp]
        if len(kept) != len(self.breakpoints):
            self.breakpoints = kept
            self.breakpoints_changed.emit()

    def clear_breakpoints(self) -> None:
        """Remove every breakpoint, NaN breaking included."""
        self.breakpoints = []
        self._break_on_nonfinite = False
        self.breakpoints_changed.emit()

    def node_breakpoints(self) -> set[str]:
        return {b.node for b in self.breakpoints if isinstance(b, NodeBreakpoint)}

    # -- reading ---------------------------------------------------------------------------
    def value(self, name: str) -> np.ndarray | None:
        v = self.trace.value(self.model.aliases.get(name, name), self._cursor)
        return None if v is None else self.backend.to_numpy(v)

    def grad(self, name: str) -> np.ndarray | None:
        """The gradient of node `name` as known at the cursor; a tied parameter answers to each of its names."""
        g = self.trace.grad(self.model.aliases.get(name, name), self._cursor)
        return None if g is None else self.backend.to_numpy(g)

    @property
    def loss_node(self) -> Node | None:
        out = self.graph.output
        return out if out.op.is_loss else None

    def gradient_flows(self, name: str) -> bool:
        """Whether a gradient from the loss reaches node `name` (an index, a mask or a target gets none)."""
        loss = self.loss_node
        if loss is None:
            return False
        if loss is self.trace.graph.output:  # the trace's plan walked it already
            return name in self.trace.reached
        if self._reached_for is not loss:
            self._reached, self._reached_for = gradient_reaches(loss), loss
        return name in self._reached

    @property
    def prediction_node(self) -> Node:
        return output_node(self.graph)

    def position_text(self) -> str:
        """Where the cursor is, as the status bar says it: "backward 7/18 · sigmoid h1"."""
        total = len(self.steps)
        if self._cursor == 0:
            return f"ready 0/{total} · press Step to run the first op"
        s = self.steps[self._cursor - 1]
        return f"{s.phase} {self._cursor}/{total} · {s.node.op.name} {s.node.name}"

    def node_phase_index(self, name: str, phase: str) -> int | None:
        """The step that runs `name`'s `phase`: asked by the inspector at every step, so looked up, not scanned
        (a scan was 12-16 ms per step at 20,000 nodes). The table is rebuilt when the schedule changes."""
        schedule = self.steps
        if self._step_of is None or self._step_of[0] is not schedule:
            table: dict[tuple[str, str], int] = {}
            for s in schedule:
                table.setdefault((s.node.name, s.phase), s.index)
            self._step_of = (schedule, table)
        return self._step_of[1].get((name, phase))

    # -- changing the model ----------------------------------------------------------------
    def set_params(self, params: Mapping[str, Any]) -> None:
        """New parameter values (after a training step): a fresh trace, the cursor back to the start."""
        self.params.update(params)
        self.epoch = None
        self.refresh()

    def with_loss(self, loss: str | None) -> tuple[Session, bool]:
        """A session on the same model, backend, parameters and inputs, with `loss` (None or "none": forward only),
        and whether its target was drawn: the data's own `y` stays where it fits the new loss, else one of the
        right kind is drawn, seeded (class indices for cross_entropy, 0/1 for bce), as for a model opened
        without data; the user's labels are kept meanwhile (`user_labels`), and taken again by a loss they fit.
        The breakpoints and snapshots carry over; the cursor starts again."""
        return self._remade(self.model.per_token(False), "none" if loss is None else loss)

    def with_output(self, output: str | int) -> tuple[Session, bool]:
        """`with_loss`'s session, its loss (if any) on the model's output `output` (a name `Model.with_output` takes),
        and whether its target was drawn (the data's `y` stays where it fits that output). Logits read a row per token
        stay so when they stay the prediction; another output is taken as the model returns it."""
        model, rows = self.model, self.model.graph.output
        if rows.meta.get("per_token"):
            model = model.per_token(False)
            output = rows.inputs[0].name if output == rows.name else output
        model = model.with_output(output)
        if rows.meta.get("per_token") and model.graph.output.name == rows.inputs[0].name:
            model = model.per_token()
        return self._remade(model, self.loss_name or "none")

    def with_per_token(self) -> tuple[Session, bool]:
        """`with_loss`'s session with cross-entropy over the prediction read as a row per token (`Model.per_token`):
        a language model's (batch, tokens, vocabulary) logits against (batch, tokens) labels."""
        return self._remade(self.model.per_token(), "cross_entropy")

    def _remade(self, model: Model, wanted: str) -> tuple[Session, bool]:
        inputs = _model_inputs(model, self.batch, wanted != "none")
        labels = self.user_labels
        with_labels = inputs if labels is None else {**inputs, TARGET: labels}
        session: Session | None = None
        drawn = False
        if wanted != "none" and labels is not None:
            try:
                session = Session(model, self.backend, with_labels, wanted, self.name, self.data_seed)
            except (DataError, ShapeError):
                session = None
        if session is None:
            drawn = wanted != "none"
            named = model.renamed(target_name_freed(model.graph)) if drawn else model  # as the session names them
            batch = example_batch(fit_batch(named.graph, inputs), self.data_seed, wanted, inputs)
            session = Session(model, self.backend, batch, wanted, self.name, self.data_seed)
        session.target_drawn = drawn
        session.user_labels = labels  # kept while a loss they do not fit is chosen, for one they fit again
        session._data_dtypes = {**session._data_dtypes, **{k: v for k, v in self._data_dtypes.items() if k != TARGET}}
        session.source = self.source
        session.breakpoints = list(self.breakpoints)
        session._break_on_nonfinite = self._break_on_nonfinite
        session.snapshots = self.snapshots
        session.set_params(self.params)  # what training in this window reached, if it ran
        return session, drawn

    def saved_model(self, training: Any = None) -> Model:
        """The session as File ▸ Save writes it (`save`), so that reopening it shows the same numbers at every step: the
        model with the parameters as trained (copies: a save written on another thread races no training), its loss
        (the output it is on and a row per token are in the graph), the batch as used, the inputs in the dtypes the
        data gave and the user's labels as given (a drawn target marked so), and the recorded epochs; `training`
        (a TrainingDefaults) replaces the model's training settings (`propscope train --out`: those it used)."""
        from ..graph.readers.snapshots import attach

        batch = {k: np.asarray(v).astype(self._data_dtypes.get(k, np.asarray(v).dtype))
                 for k, v in self.batch.items()}
        target_is_input = TARGET in self.model.graph and self.model.graph[TARGET].op.name == "input"
        if self.user_labels is not None and not self.target_drawn:
            batch[TARGET] = np.array(self.user_labels)
        elif self.loss_name is None and not target_is_input:
            batch.pop(TARGET, None)  # a target drawn for a loss no longer chosen: not the user's, not saved
        params = {k: np.array(v) for k, v in self.parameters_numpy().items()}
        model = replace(self.model, arrays={**self.model.arrays, **params}, batch=batch, loss=self.loss_name,
                        target_drawn=self.target_drawn, training=self.model.training if training is None else training)
        return attach(model, self.snapshots) if self.snapshots else model

    def save(self, path: str | Path) -> Path:
        """Write `saved_model()` to `path` (a `.propscope` file); returns the path written."""
        from ..graph.readers import save_model

        return save_model(self.saved_model(), path)

    def refresh(self) -> None:
        self.trace = self._new_trace()
        self._cursor = 0
        self.trace_changed.emit()
        self.cursor_moved.emit(0)

    def set_backend(self, backend: Backend, prepared: BackendTrace | None = None) -> None:
        """Run the same graph on another backend, keeping the cursor where it is.

        The new trace is computed up to the cursor before anything is replaced, so a backend that
        fails (an op it lacks, a device that runs out of memory) leaves the session as it was.
        `prepared` is `prepare_backend(backend)`'s (the app makes it in a worker thread: at the end of a real-size
        pass it is the whole pass again); made for other parameters than the session's now, it is made again.
        """
        if prepared is None or prepared.backend is not backend or any(
                self.params.get(k) is not v for k, v in prepared.source.items()) or len(prepared.source) != len(
                self.params):
            prepared = self.prepare_backend(backend)
        if self._cursor:  # the cursor may have moved on while it was prepared
            prepared.trace.compute_through(self._cursor - 1)
        self.backend, self.params, self.trace = backend, prepared.params, prepared.trace
        self.trace_changed.emit()
        self.cursor_moved.emit(self._cursor)

    def prepare_backend(self, backend: Backend, cursor: int | None = None) -> BackendTrace:
        """What `set_backend(backend)` installs: the parameters on `backend` and a trace there computed up to
        `cursor` (default: the session's). It changes nothing in the session, so it may run in a worker thread
        while the session is stepped (as `diff_backends` reads it)."""
        source = dict(self.params)
        params = {k: backend.asarray(self.backend.to_numpy(v)) for k, v in source.items()}
        trace = Trace(self.graph, backend, self._leaves(backend, params), self.name)
        cursor = self._cursor if cursor is None else cursor
        if cursor:
            trace.compute_through(cursor - 1)
        return BackendTrace(backend, source, params, trace)

    def model_at(self, shapes: Mapping[str, tuple[int, ...]], switches: Mapping[str, Any] | None = None) -> Model:
        """The session's model at other input sizes (by input name; `x` names a single input): its file read again
        where it leaves sizes symbolic (a dynamic export, a transformers folder, an architecture by name), with the
        choices the session made on it (the output, a row per token, a node named `y` giving way); itself where no
        symbolic size changes. The last few are kept: a mini-batch's size comes back every epoch and every run.
        `switches` (the data) gives the values of inputs that picked a branch when the file was read (`switched_by`:
        a merged decoder's `use_cache_branch`); a thread of its own sees no switches given around its caller."""
        if switches is not None:
            with switched_by(switches):
                return self.model_at(shapes)
        key = tuple(sorted((k, tuple(v)) for k, v in shapes.items() if k != TARGET))
        switched = switches_changed(self.model)  # a branch read at another value (`set_batch`'s data)
        cached = self._models_at.get((key, switched))
        if cached is not None:
            return cached
        model = _at_data_sizes(self.model, dict(key))
        if model is self.model:
            return model
        if self.loss_name is not None:  # read again: `y` gives way again, as at the start
            model = model.renamed(target_name_freed(model.graph))
        # the parameters are the same at any size: keep the session's arrays, not a second copy of a big model's
        fresh = model.parameters
        same = {k: v for k, v in self.model.arrays.items() if k in fresh and np.shape(fresh[k]) == np.shape(v)}
        model = replace(model, arrays={**model.arrays, **same})
        self._models_at = {**dict(list(self._models_at.items())[-2:]), (key, switched): model}
        return model

    def reads_again_at(self, shapes: Mapping[str, tuple[int, ...]], switches: Mapping[str, Any] | None = None) -> bool:
        """Whether `model_at(shapes, switches)` (and so `set_batch` with data of these shapes and values) reads the
        model's file again: an app does that off its GUI thread first (a transformers folder is traced again:
        seconds; a merged decoder whose data picks the other branch is read again)."""
        if switches is not None:
            with switched_by(switches):
                return self.reads_again_at(shapes)
        key = tuple(sorted((k, tuple(v)) for k, v in shapes.items() if k != TARGET))
        return (key, switches_changed(self.model)) not in self._models_at and isinstance(self.model, SizedModel) and \
            self.model.reads_again_at(_input_shapes(self.model, dict(key)))

    def set_batch(self, batch: Mapping[str, np.ndarray], target_drawn: bool = False) -> None:
        """New data; `target_drawn`: its `y` was drawn here (`with_drawn_target`), not given."""
        self._same_path(batch)
        with switched_by(batch):  # a branch an input's value picks (a merged decoder's) is read at the data's
            model = self.model_at({k: np.shape(v) for k, v in batch.items()})
        reread = model is not self.model
        if self.loss_name == "cross_entropy" and TARGET in batch:  # (B, T) labels read (B, T, V) logits per token
            model = _rows_for_token_labels(model, np.shape(batch[TARGET]))
        self.batch, self.graph = self._prepare(model, batch)
        self.model = model
        self._models_at = {}  # made for the model before (a row per token may have come since)
        if reread:  # the file read at the data's sizes: its constants are made for them, the parameters stay
            self.params = {**{k: self.backend.asarray(v) for k, v in model.arrays.items()},
                           **{k: v for k, v in self.params.items() if k in model.parameters}}
        self.target_drawn = target_drawn or (self.target_drawn and TARGET not in batch)
        self.user_labels = None if target_drawn else _labels_in(model, batch)  # new data, its own labels (or none)
        self._data_dtypes = _whole_number_dtypes(model, batch)
        self.refresh()

    def drawn_target_note(self, brief: bool = False) -> str:
        """The target drawn for data that carried none, in words: "the cross_entropy target y is drawn at random
        (seed 0): class 207"; `brief`: "class 207 drawn at random (seed 0)"."""
        y = np.asarray(self.batch.get(TARGET, ()))
        seed = f"at random (seed {self.data_seed})"
        classes = ""
        if self.loss_name == "cross_entropy" and 0 < y.size <= 8:
            classes = f"class{'es' if y.size > 1 else ''} {', '.join(str(int(c)) for c in y.ravel())}"
        if brief:
            return f"{classes or 'a target'} drawn {seed}"
        return f"the {self.loss_name} target y is drawn {seed}" + (f": {classes}" if classes else "")

    def photo_notes(self, path: str | Path, drawn: bool, label: int | None = None, normalization: Any = "model",
                    yours: str = "--label C") -> tuple[list[str], list[str]]:
        """A photo given as this session's data, in words: (brief, whole) lists of what is said of it (how it became
        the input; its class `drawn`, or the `label` given). `normalization`: the one used, where not the model's;
        `yours`: how the user gives a class instead of the drawn one."""
        from ..graph.datasets import image_note

        brief = [image_note(path, self.model, brief=True, normalization=normalization)]
        whole = [image_note(path, self.model, normalization=normalization)]
        if drawn:
            brief.append(f"no label: {self.drawn_target_note(brief=True)}")
            whole.append(f"{Path(path).name} carries no label: {self.drawn_target_note()}; {yours} gives yours")
        elif label is not None:
            brief.append(f"its class: {label}")
        return brief, whole

    def _same_path(self, batch: Mapping[str, np.ndarray]) -> None:
        """Refuse inputs other than those a model traced along one path was traced on (`Model.decisions`): its
        forward decided by their values, and other values may take another path (the labels may change)."""
        decided = self.model.decisions
        if not decided:
            return
        traced = {k: v for k, v in self.model.batch.items() if k != TARGET}
        inputs = _input_shapes(self.model, {k: v for k, v in batch.items() if k != TARGET})
        for name, array in traced.items():
            given = batch.get(name, batch.get("x") if len(traced) == 1 else None)
            if given is None or name not in inputs:
                continue
            if np.shape(given) != np.shape(array) or not np.array_equal(np.asarray(given), array, equal_nan=True):
                raise DataError(f"{self.name} was traced along the path its inputs take (its forward decided "
                                 f"{len(decided)} time(s) by tensor values, first at {decided[0]}); input {name!r} "
                                 "differs from those it was traced on: open the module again on this data")

    def parameters_numpy(self) -> dict[str, np.ndarray]:
        return {k: self.backend.to_numpy(v) for k, v in self.params.items()}

    def explain(self, name: str, index: tuple[int, ...] | int = (), max_paths: int = 200) -> Any:
        from .explain import explain

        return explain(self, name, index, max_paths)

    def check_runnable(self) -> None:
        """Raise UnsupportedOpError naming the first op a loaded model uses that propscope cannot run.

        Stepping stops there by itself; training (which runs the whole graph at once) asks first.
        """
        from ..graph.ops.unsupported import stop_error, unsupported_nodes

        blocked = unsupported_nodes(self.graph)
        if blocked:
            raise stop_error(blocked[0])

    def training_memory(self, batch_size: int | None) -> PassEstimate:
        """What one training step on the session's data holds at its peak, in (mini-)batches of `batch_size` (None:
        the whole batch): see `memory.training_estimate`. Checked before training starts."""
        rows = [np.shape(self.batch[n.name]) for n in self.graph.inputs if n.name != TARGET and n.name in self.batch]
        samples = rows[0][0] if rows and rows[0] else 1
        return training_estimate(self.name, self.graph, self.steps, self.trace.reached, self.backend.dtype,
                                 self.graph.parameters, samples, batch_size)

    history: Any = None  # the last train() call's History
    snapshot_settings: Any = None  # what train() records when not told (debugger.snapshots.SnapshotSettings)

    def at_epoch(self, epoch: int) -> Session:
        """Show the parameters recorded after `epoch` epochs of training, the cursor kept; returns the session."""
        from .snapshots import show_epoch

        show_epoch(self, epoch)
        return self

    def train(
        self, epochs: int | None = None, optimizer: str | None = None, lr: float | None = None,
        batch_size: int | None = None, test: Mapping[str, np.ndarray] | None = None, **options: Any,
    ) -> Any:
        """Train on the batch (None: the example's settings); the trace then holds the final parameters.

        See `debugger.trainer` (a `Trainer` runs on a worker thread and can be paused and stopped).
        """
        from .trainer import train

        self.check_runnable()
        self.training_memory(self.model.training.batch_size if batch_size is None else batch_size).check(
            current_budget())
        self.history = train(self, epochs, optimizer, lr, batch_size, test, **options)
        return self.history

    def __repr__(self) -> str:
        return f"<Session {self.name} on {self.backend.name}/{self.backend.dtype}: {self.position_text()}>"


def _model_inputs(model: Model, batch: Mapping[str, Any], with_loss: bool) -> dict[str, Any]:
    """The session's inputs for another session on `model`, its target `y` left out; the model's own input named `y`
    (a forward-only session's) goes as `y_model` where a loss takes the name `y` (target_name_freed)."""
    own_y = TARGET in model.graph and model.graph[TARGET].op.name == "input"
    inputs = {k: v for k, v in batch.items() if k != TARGET or own_y}
    if own_y and with_loss and TARGET in inputs:
        inputs[target_name_freed(model.graph)[TARGET]] = inputs.pop(TARGET)
    return inputs


def _labels_in(model: Model, batch: Mapping[str, Any]) -> np.ndarray | None:
    """The data's labels `y`, or None where it has none or its `y` feeds the model's input of that name."""
    if TARGET not in batch or (TARGET in model.graph and model.graph[TARGET].op.name == "input"):
        return None
    return np.asarray(batch[TARGET])


def _whole_number_dtypes(model: Model, batch: Mapping[str, Any]) -> dict[str, np.dtype[Any]]:
    """The whole-number dtypes the data gave its arrays in (the session computes on them as floats), by the names the
    session keeps them under (`x` names a single input)."""
    inputs = model.graph.inputs
    single = inputs[0].name if len(inputs) == 1 and inputs[0].name not in batch and "x" in batch else None
    dtypes = {k: np.asarray(v).dtype for k, v in batch.items()}
    return {(single if k == "x" and single else k): d for k, d in dtypes.items() if d.kind in "biu"}


def _broadcasts_otherwise(labels: tuple[int, ...], prediction: tuple[int, ...]) -> bool:
    """Whether torch's elementwise loss of `prediction` against `labels` would broadcast them to a shape other than
    the prediction's (the classic (N, 1) against (N,) → (N, N))."""
    try:
        return tuple(np.broadcast_shapes(tuple(labels), tuple(prediction))) != tuple(prediction)
    except ValueError:
        return False


def _at_data_sizes(model: Model, batch: Mapping[str, Any]) -> Model:
    """`model` read again at the data's sizes (arrays, or their shapes) where its file leaves them dynamic (a batch, a
    sequence length, an image size exported as symbols), else as it is."""
    if not isinstance(model, SizedModel):
        return model
    shapes = _input_shapes(model, batch)
    # an input `y` the session renamed for the target (y_model) is read again by the file's name for it
    back = {n.name: TARGET for n in model.graph.inputs if n.meta.get("returns") == TARGET and n.name != TARGET}
    as_read = model.renamed(back) if back else model
    assert isinstance(as_read, SizedModel)  # renamed keeps the class (dataclasses.replace)
    fresh = as_read.at_sizes(shapes)
    return model if fresh is as_read else fresh


def _input_shapes(model: Model, batch: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shapes of the data's arrays (or the shapes given) by the model's input names: `x` names a single input;
    an input `y` renamed `y_model` for the target (target_name_freed) is given under both names, as its file reads it
    again by its own."""
    shapes = {k: tuple(v) if isinstance(v, tuple) else tuple(np.shape(v)) for k, v in batch.items()}
    inputs = model.graph.inputs
    if len(inputs) == 1 and inputs[0].name not in shapes and "x" in shapes:  # `x` always names the single input
        shapes[inputs[0].name] = shapes["x"]
    for node in inputs:
        if node.meta.get("returns") == TARGET and node.name in shapes:
            shapes[TARGET] = shapes[node.name]
    return shapes


def _by_file_names(model: Model, batch: Mapping[str, Any], with_loss: bool) -> Mapping[str, Any]:
    """The data by the names the model's file gives its inputs: with a loss, `y` is the target, and a model input
    named `y` comes as `y_model` (the name target_name_freed gives it); without one, `y` is that input's."""
    if not with_loss or TARGET not in model.graph or model.graph[TARGET].op.name != "input":
        return batch
    renamed = target_name_freed(model.graph)[TARGET]
    found = {k: v for k, v in batch.items() if k not in (TARGET, renamed)}
    if renamed in batch:
        found[TARGET] = batch[renamed]
    return found


def _rows_for_token_labels(model: Model, labels: tuple[int, ...]) -> Model:
    """`model` read a row per token (`Model.per_token`) where its labels can mean nothing else: (B, T) labels for
    (B, T, V) logits with T ≠ V, which cross-entropy with the classes on axis 1 (torch's) cannot take; else as it is."""
    logits = model.graph.output.shape
    if len(logits) == 3 and len(labels) == 2 and labels[1] == logits[1] != logits[2]:
        return model.per_token()
    return model


def _class_targets(y: np.ndarray, logits_shape: tuple[int, ...]) -> np.ndarray:
    """Class indices for cross-entropy: (N,) integers from (N,), (N, 1) or one-hot (N, C), or from (B, T) token
    labels where the logits are a row per token (N = B·T); for logits with positions, (N, C, d1, ...) as torch lays
    them out, (N, d1, ...) integers."""
    if y.shape == logits_shape:
        return y
    axis = class_axis(logits_shape)  # where the classes are (torch's cross_entropy)
    indices_shape = class_indices_shape(logits_shape)
    if y.ndim == len(logits_shape) and y.shape[-1] == 1 and len(logits_shape) == 2:
        y = y[..., 0]
    if len(logits_shape) == 2 and y.ndim >= 2 and y.size == logits_shape[0] and y.shape[-1] != logits_shape[1]:
        y = y.reshape(-1)  # token labels (B, T) for a language model's logits read a row per token (B·T, V)
    if y.shape != indices_shape:
        one_hot = one_hot_error(y.shape, logits_shape)
        raise ShapeError(one_hot or f"target {TARGET!r}: expected class indices {fmt(indices_shape)} for the "
                         f"logits {fmt(logits_shape)}, got {fmt(y.shape)}")
    classes = logits_shape[axis]
    ids = y[y != IGNORE_INDEX]  # torch's ignore_index: a label that counts nothing (transformers' padding)
    if not np.all(np.isfinite(y)) or np.any(ids != np.round(ids)) or np.any(ids < 0) or np.any(ids >= classes):
        raise DataError(class_count_error(y, logits_shape, y.shape))
    return y.astype(np.int64)


def _as_array(value: Any) -> np.ndarray:
    """A data array given as a NumPy array, a torch tensor (a notebook's labels) or a list."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def open_session(
    target: str | Path | Model | Any,
    backend: str = "numpy",
    dtype: str | None = None,
    seed: int = 0,
    data: str | Path | Mapping[str, np.ndarray] | None = None,
    loss: str | None = None,
    device: str = "cpu",
    arch: str | Path | None = None,
    inputs: Any = None,
    output: str | int | None = None,
    per_token: bool = False,
    normalize: str | None = None,
    label: int | None = None,
) -> Session:
    """A Session on an example name, a model file, a Model, or a model held in Python.

    `arch` (an example name or a model file) is the architecture a state dict's weights are loaded into. A
    `torch.nn.Module` is traced (torch.export) on `inputs`, the arguments it is called with: a tensor or an array, a
    tuple of them, or a dict by argument name; they are the session's batch, and `data` then only adds to it (its
    target `y`); its arrays may be tensors. An `ExportedProgram` brings its own inputs. `loss="none"` runs forward only.
    `dtype` defaults to float32, or to float64 for a module whose weights are float64. `output` (a name or a position)
    picks which of a model's several outputs is the prediction the loss goes on; by default the first
    (`Model.outputs_note` says which). `per_token` reads a language model's (batch, tokens, vocabulary) logits as a row
    per token for cross-entropy (`Model.per_token`); (batch, tokens) labels in `data` read them so without it.
    An image as `data` is its pixels / 255, normalized as `normalize` says (`datasets.normalization_for`: by default
    as the model's own images were, where the model says; "imagenet", "none", or "MEAN/STD"), and has no label:
    `label` is its class for a cross-entropy loss (every pixel's, for a map), else one is drawn at random.
    """
    from ..graph.examples import EXAMPLES
    from ..graph.gc_pause import paused_gc
    from ..graph.readers import display_name, load_target, torch_module

    live = torch_module.is_live(target)
    if inputs is not None and not live:
        raise DataError("inputs= is for a torch module held in Python; a file or an example takes data=")
    image = data if isinstance(data, str | Path) and is_image(data) else None  # fitted to the model's input, below
    batch = None if data is None or image is not None else load_data(data) if isinstance(data, str | Path) else \
        {k: _as_array(v) for k, v in data.items()}
    if live:
        model = torch_module.open_module(target, inputs)
        if dtype is None:  # a float64 module is meant to be computed in float64
            dtype = "float64" if any(a.dtype == np.float64 for a in model.parameters.values()) else "float32"
    else:
        # a file's dynamic (symbolic) input sizes are read at the data's, not at its example's and then again (and
        # a branch a one-element input picks when the file is read, at the data's value)
        with reading_at(_reading_shapes(batch or {}), batch):
            model = target if isinstance(target, Model) else load_target(target, seed=seed, arch=arch)
    model = model.with_output(output)
    if image is not None:  # a photo for a vision model: at its image input's size
        if normalize is not None:  # asked for: the model says so from now on (the notes, File ▸ Load data)
            model = replace(model, image_normalization=normalization_for(normalize, model))
        batch = image_batch(image, model.graph.inputs, model.image_normalization, model.image_fit)
    elif normalize is not None:
        normalization_for(normalize, model)  # a misspelt choice is said, data or not
    if per_token:
        model = model.per_token()
        loss = loss or "cross_entropy"
    drawn = False
    if label is not None and image is None:
        raise DataError("label= (--label) is the class of an image given as data; other data gives its labels as y")
    if image is not None and batch is not None:  # a photo has no label: the one given, else one drawn
        wanted = model.loss if loss is None else loss
        if label is not None and wanted != "cross_entropy":
            raise DataError(f"--label is a class for the cross_entropy loss; the loss is {wanted or 'none'}")
        if wanted not in (None, "none"):
            model = _at_data_sizes(model, batch)  # at the photo's sizes (a batch of one), as the session reads
            batch = with_drawn_target(model, batch, wanted, seed, label)
            drawn = label is None
    chosen = None
    if loss is None and model.loss is None and batch is not None and _holds_labels(model, batch):
        chosen = loss = loss_for_labels(batch[TARGET], model.graph.output.shape)
    if live and batch is not None:  # the module's inputs stay unless data replaces them; data adds the target
        replaced = "x" in batch and len(model.graph.inputs) == 1  # `x` always names a single input
        batch = {**({} if replaced else model.batch), **batch}
    # a file is named by its stem, as File ▸ Open names it (the title, the default save and export names)
    name = model.graph.name if live or isinstance(target, Model) else str(target) if str(target) in EXAMPLES \
        else display_name(target)
    with paused_gc():  # the schedule of a big graph is 10⁴-10⁵ objects that all live on (see paused_gc)
        session = Session(model, get_backend(backend, dtype or "float32", device), batch, loss, name=name, seed=seed)
    session.source = "" if live or isinstance(target, Model) else str(target)
    session.loss_from_labels = chosen is not None
    if drawn:
        session.target_drawn, session.user_labels = True, None
    return session


def with_drawn_target(model: Model, batch: Mapping[str, Any], loss: str, seed: int = 0,
                      label: int | None = None) -> dict[str, Any]:
    """`batch` with a target `y` for `loss` drawn at its sizes (seeded; class indices for cross-entropy), as a model
    opened without data gets one: for inputs that carry no label (an image). `label`: that class instead, for every
    sample (and every pixel of a map). A batch with a `y` is kept as it is."""
    if TARGET in batch:
        return dict(batch)
    named = model.renamed(target_name_freed(model.graph))  # as the session will name its nodes
    inputs = dict(batch)
    if len(named.graph.inputs) == 1 and "x" in inputs:
        inputs[named.graph.inputs[0].name] = inputs.pop("x")  # `x` always names the single input
    graph = fit_batch(named.graph, inputs)
    if label is None:
        return example_batch(graph, seed, loss, inputs)
    return {**inputs, TARGET: np.full(class_indices_shape(output_node(graph).shape), int(label), dtype=np.int64)}


def _reading_shapes(batch: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The data's shapes by the file's input names: `y_model` is a model input named `y` (the name
    target_name_freed gives it, the data's `y` being the target); else `y` may be that input's (forward only), and
    is no file input's name where it is the target alone."""
    shapes = {k: np.shape(v) for k, v in batch.items()}
    if f"{TARGET}_model" in shapes:
        shapes[TARGET] = shapes[f"{TARGET}_model"]
    return shapes


def _holds_labels(model: Model, batch: Mapping[str, Any]) -> bool:
    """Whether the data's `y` is labels: not where it feeds a model input named `y` (the data gives no `y_model`)."""
    if TARGET not in batch:
        return False
    is_input = TARGET in model.graph and model.graph[TARGET].op.name == "input"
    return not is_input or target_name_freed(model.graph)[TARGET] in batch


def loss_for_labels(labels: Any, prediction: tuple[int, ...]) -> str | None:
    """The loss a model without one of its own takes from the data's labels `y`, or None where they do not say:
    whole numbers shaped as class indices for the prediction (torch's classes on axis 1; (batch, tokens) for a
    language model's (batch, tokens, vocabulary) logits), cross-entropy; real numbers of the prediction's own shape,
    mean squared error."""
    y = np.asarray(labels)
    prediction = tuple(prediction)
    if y.dtype.kind in "iu":
        tokens = len(prediction) == 3 and y.shape == prediction[:2]
        column = len(prediction) == 2 and y.shape == (prediction[0], 1)
        return "cross_entropy" if tokens or column or y.shape == class_indices_shape(prediction) else None
    if y.dtype.kind == "f" and y.shape == prediction:
        return "mse"
    return None
