"""The main window: the graph canvas in the centre, docks around it, the toolbar and the menus.

It wires views to the shared bridge, selection and theme, and turns user actions into session
calls; it computes nothing itself. Opening a file runs in a `Job`, and any failure is shown in a
dialog while the current session stays as it was.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QToolBar,
    QWidget,
)

from ..backends import DTYPES, backend_devices, get_backend
from ..debugger import Session, open_session
from ..debugger.session import BackendTrace, loss_for_labels, with_drawn_target
from ..graph.datasets import image_batch, is_image, load_data, nonfinite_note, normalization_for
from ..graph.errors import PropscopeError
from ..graph.examples import EXAMPLES
from ..graph.layout import Layout
from ..graph.model import TARGET, example_batch, output_name
from ..graph.ops import CATALOG, LOSSES
from ..graph.ops.shapes import fmt
from ..graph.ops.unsupported import unsupported_summary
from ..graph.readers import display_name, save_model
from ..graph.readers._budget import (
    current_limit,
    default_budget,
    human,
    max_memory_override,
    parse_size,
    set_max_memory,
)
from .actions import DEFAULT_PACE_S, DebugActions
from .bridge import SessionBridge
from .canvas import GraphView
from .canvas.colour_by import install_colour_by
from .canvas.folding import Folding
from .canvas.navigation import install_navigation
from .diff.wiring import diff_view, install_diff, show_backends
from .docks import default_window_size, make_dock, tabify
from .elided_label import ElidedLabel
from .export.menu import attach_export
from .guard import guarded
from .help import add_help_menu
from .input_shape import InputShapeDialog, asks_input_shapes
from .inspect.chain_rule import ChainRuleView
from .inspect.explain_view import ExplainDialog
from .inspect.grad_flow_view import attach_grad_flow
from .inspect.gradcheck_view import attach_gradcheck
from .inspect.inspector import Inspector
from .inspect.layer_view import LayerView, fitting_nodes
from .inspect.neuron_view import NeuronView
from .inspect.step_list import StepList
from .jobs import Job
from .lessons import attach_lessons
from .opening import (
    ArchDialog,
    ArchitectureDialog,
    DataDialog,
    Loaded,
    RecentFiles,
    ReportDialog,
    is_model_file,
    is_state_dict,
    load_file,
    open_filter,
)
from .projector import ProjectorLayout
from .selection import Selection
from .theme import ThemeManager
from .timeline.wiring import install_timeline
from .toolbars import ToolbarWrap
from .training.dock import TrainingPanel

if TYPE_CHECKING:
    from ..debugger.diff import GraphDiff
    from .diff.view import DiffView
    from .lessons.panel import LessonController

BACKEND_LABELS = {"numpy": "NumPy", "torch": "PyTorch"}
TORCH_INSTALL = "pip install 'propscope[torch]'"
MEMORY_KEY = "open/max_memory"  # the memory budget's setting, as typed (`2G`); empty or absent: the default
LAYOUT_VERSION = 2  # bump when docks change, so an old saved layout is not restored onto new docks


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def backend_key(backend: Any) -> str:
    """The backend choice's data for a backend: its name, with the device when that is not the CPU."""
    device = str(getattr(backend, "device", "cpu"))
    return backend.name if device == "cpu" else f"{backend.name}:{device}"


LOSS_LABELS = {"cross_entropy": "&Cross-entropy (class indices)", "mse": "&Mean squared error",
               "sse": "&Sum of squared errors (½·Σ, the tutorial's)", "bce": "&Binary cross-entropy",
               "nll_loss": "&Negative log-likelihood (on log-probabilities)"}
# Debug ▸ Loss's entry for cross-entropy over a language model's logits read a row per token (Model.per_token)
PER_TOKEN = "cross_entropy per token"


def loss_choice(session: Session) -> str:
    """Which entry of Debug ▸ Loss `session` is on: a loss's name, "none", or PER_TOKEN."""
    if session.loss_name == "cross_entropy" and session.prediction_node.meta.get("per_token"):
        return PER_TOKEN
    return session.loss_name or "none"


class MainWindow(QMainWindow):
    def __init__(self, session: Session, settings: QSettings | None = None,
                 themes: ThemeManager | None = None, seed: int = 0, layout: Layout | None = None) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.settings = settings
        self.seed = seed
        self.themes = themes or ThemeManager(self)
        self._own_themes = themes is None
        self.bridge = SessionBridge(session, self)
        self.selection = Selection(self)
        self.jobs: list[Job] = []
        self.last_error: str | None = None
        self.error_box: QMessageBox | None = None
        self._forward_only_for: object = None  # the model the user chose Debug ▸ Loss ▸ none for (data keeps it so)
        # The window follows the cursor first, so the docks refresh once with the new selection.
        self.bridge.cursorMoved.connect(self._cursor_moved)
        self.bridge.sessionChanged.connect(self._session_changed)
        self.bridge.breakpointHit.connect(self._breakpoint_hit)

        self.canvas = GraphView(self.bridge, self.selection, self.themes, layout=layout)
        self.setCentralWidget(self.canvas)
        self.inspector = Inspector(self.bridge, self.selection, self.themes)
        self.chain = ChainRuleView(self.bridge, self.selection, self.themes)
        self.steps = StepList(self.bridge, self.themes)
        self.inspector_dock = self._dock("Inspector", "inspectorDock", self.inspector,
                                         Qt.DockWidgetArea.RightDockWidgetArea)
        self.steps_dock = self._dock("Steps", "stepsDock", self.steps, Qt.DockWidgetArea.RightDockWidgetArea)
        self.chain_dock = self._dock("Chain rule", "chainRuleDock", self.chain,
                                     Qt.DockWidgetArea.BottomDockWidgetArea)
        tabify(self, self.inspector_dock, self.steps_dock)
        self.layer_view = LayerView(self.bridge, self.selection, self.themes)
        self.layer_dock = self._dock("Layer view", "layerViewDock", self.layer_view,
                                     Qt.DockWidgetArea.RightDockWidgetArea)
        tabify(self, self.inspector_dock, self.layer_dock)
        self._layer_raised = False  # the layer view came forward by itself (and goes back when it no longer fits)
        self._layer_widened = False
        self._layer_hidden = False  # hidden by the app because the model has nothing to show there
        self.layer_view.fitChanged.connect(self._layer_fit)
        self.inspector_dock.raise_()
        self._add_training_docks()
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.recent = RecentFiles(settings)
        self.last_warning: str | None = None
        self.last_report: Any = None
        self.setAcceptDrops(True)  # a model file dropped anywhere on the window opens
        self.debug = DebugActions(self.bridge, self)
        self.debug.autoplay.stopped.connect(lambda why: why and self.message(f"Autoplay stopped: {why}"))
        self.debug.failed.connect(self._step_failed)
        self._build_toolbar()
        self._build_menus()
        self._build_status()
        self.timeline = install_timeline(self)  # under the canvas (gui/timeline)
        self.diff_dock = install_diff(self)  # Debug ▸ Diff (gui/diff); the view is made when first shown
        self.navigation = install_navigation(self)  # Ctrl+F, Space, minimap, breadcrumbs (gui/canvas)
        self.colour_by = install_colour_by(self)  # View ▸ Colour nodes by, C (gui/canvas/colour_by.py)
        self.canvas.explainRequested.connect(lambda name: self.explain(name, self.selection.index))
        self.canvas.message.connect(self.message)
        self.canvas.runRequested.connect(self.debug.run_sliced)
        self.steps.runRequested.connect(self.debug.run_sliced)
        self.canvas.setAcceptDrops(False)  # drops fall through to the window
        self.canvas.viewport().setAcceptDrops(False)
        self.chain.explainRequested.connect(self.explain)
        self.themes.changed.connect(self._theme_changed)
        self.projector = ProjectorLayout(self)
        self.lesson_dock = attach_lessons(self)  # File ▸ Lessons and the Lesson dock (gui/lessons), made when used
        self.exports = attach_export(self)  # File ▸ Export for slides (gui/export)
        self.gradcheck = attach_gradcheck(self)  # Debug ▸ Gradient check (gui/inspect/gradcheck_view.py)
        self.grad_flow = attach_grad_flow(self)  # Debug ▸ Gradient flow (gui/inspect/grad_flow_view.py)
        self.toolbar_wrap = ToolbarWrap(self, [self.toolbar, self.session_toolbar],  # a second row, not »
                                        wrap=lambda: not self.themes.projector)
        screen = self.screen()
        offscreen = QGuiApplication.platformName() in ("offscreen", "minimal")
        self.resize(*default_window_size(None if offscreen or screen is None else screen.availableGeometry()))
        self.resizeDocks([self.inspector_dock], [self.themes.theme.px(340)], Qt.Orientation.Horizontal)
        self.resizeDocks([self.chain_dock], [self.themes.theme.px(230)], Qt.Orientation.Vertical)
        self._share_right_column()  # at the window's size; a saved layout (`_restore`) keeps the user's split
        self._default_state = self.saveState(LAYOUT_VERSION)
        self._restore()
        self._session_changed(session)

    @property
    def diff_view(self) -> DiffView:
        """The Diff dock's view (gui/diff), made now if the dock was never opened."""
        return diff_view(self)

    @property
    def lessons(self) -> LessonController:
        """The window's lessons (gui/lessons): the Lesson dock's panel and its controller, made on first use."""
        return self.lesson_dock.controller

    # -- building ----------------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = make_dock(title, name, widget, self)
        self.addDockWidget(area, dock)
        return dock

    def _add_training_docks(self) -> None:
        """Training (tabbed with the chain rule, below the graph) and the neuron view (under the inspector)."""
        self.training = TrainingPanel(self.bridge, self.selection, self.themes, seed=self.seed)
        self.training_dock = self._dock("Training", "trainingDock", self.training,
                                        Qt.DockWidgetArea.BottomDockWidgetArea)
        tabify(self, self.chain_dock, self.training_dock)
        self.chain_dock.raise_()
        self.neurons = NeuronView(self.bridge, self.selection, self.themes)
        self.neurons_dock = self._dock("Neurons", "neuronsDock", self.neurons, Qt.DockWidgetArea.RightDockWidgetArea)
        self.training.liveParams.connect(self.neurons.show_weights)
        self.neurons.applicable.connect(self._arrange_neurons)
        self._arrange_neurons(bool(self.neurons.layers))
        self.training.runner.stateChanged.connect(lambda _state: self._set_busy())
        self.training.message.connect(self.message)

    def _build_toolbar(self) -> None:
        bar = QToolBar("Debug", self)
        bar.setObjectName("debugToolbar")
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for act in self.debug.all:
            bar.addAction(act)
        self.pace = QDoubleSpinBox()
        self.pace.setObjectName("pace")
        self.pace.setRange(0.05, 10.0)
        self.pace.setSingleStep(0.1)
        self.pace.setDecimals(2)
        self.pace.setSuffix(" s/step")
        self.pace.setToolTip("Autoplay pace: seconds between steps")
        self.pace.setValue(DEFAULT_PACE_S)
        self.pace.valueChanged.connect(self.debug.autoplay.set_pace)
        self.pace.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        bar.addWidget(self.pace)
        self.addToolBar(bar)
        self.toolbar = bar
        bar = QToolBar("Session", self)
        bar.setObjectName("sessionToolbar")
        self.session_toolbar = bar
        self.backend_box = QComboBox()
        self.backend_box.setObjectName("backendBox")
        for name, label in BACKEND_LABELS.items():
            self.backend_box.addItem(label, name)
        if not torch_available():
            i = self.backend_box.findData("torch")
            self.backend_box.model().item(i).setEnabled(False)  # type: ignore[attr-defined]
            self.backend_box.setItemData(i, f"PyTorch is not installed: {TORCH_INSTALL}", Qt.ItemDataRole.ToolTipRole)
        self.backend_box.setToolTip("Backend that runs the ops (CUDA is offered once PyTorch has found a GPU)")
        if "torch" in sys.modules:  # already imported (the session runs on it): asking for devices is cheap
            self._offer_devices()
        self.dtype_box = QComboBox()
        self.dtype_box.setObjectName("dtypeBox")
        self.dtype_box.addItems(list(DTYPES))
        self.dtype_box.setToolTip("Float precision")
        self.example_box = QComboBox()
        self.example_box.setObjectName("exampleBox")
        for name, ex in EXAMPLES.items():
            self.example_box.addItem(name, name)
            self.example_box.setItemData(self.example_box.count() - 1, ex.summary, Qt.ItemDataRole.ToolTipRole)
        self.example_box.setToolTip("Open a built-in example")
        for box in (self.backend_box, self.dtype_box, self.example_box):
            box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # arrow keys stay with stepping
        bar.addWidget(QLabel(" Backend "))
        bar.addWidget(self.backend_box)
        bar.addWidget(self.dtype_box)
        bar.addSeparator()
        bar.addWidget(QLabel(" Example "))
        bar.addWidget(self.example_box)
        self.backend_box.activated.connect(lambda _i: self._backend_chosen())
        self.dtype_box.activated.connect(lambda _i: self._backend_chosen())
        self.example_box.activated.connect(lambda _i: self.open_example(self.example_box.currentData()))
        self.addToolBar(bar)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self.file_menu = file  # kept: looking a menu up by title walks every child of the window
        self.open_action = self._menu_action(file, "&Open…", QKeySequence.StandardKey.Open, self._open_dialog)
        self.architecture_action = self._menu_action(file, "Open &architecture by name…", "Ctrl+Shift+O",
                                                     self._architecture_dialog)
        self.architecture_action.setToolTip("resnet18, vit_b_16, convnext_tiny…: torchvision's and timm's networks "
                                            "by name, random weights")
        self.recent_menu = file.addMenu("Open &recent")
        self.recent_menu.setObjectName("recentMenu")
        self.recent_menu.aboutToShow.connect(lambda: self.recent.fill(self.recent_menu, self.open_path))
        self.recent.fill(self.recent_menu, self.open_path)
        self.data_action = self._menu_action(file, "Load &data…", "Ctrl+D", self._data_dialog)
        self.data_action.setToolTip("Data (.npz, .csv) or a generated batch for the model's inputs")
        self.memory_action = self._menu_action(file, "&Memory budget…", None, self._memory_dialog)
        self.memory_action.setToolTip("The most memory opening one file may use (--max-memory on the command line)")
        self.save_action = self._menu_action(file, "&Save as…", QKeySequence.StandardKey.SaveAs, self._save_dialog)
        file.addSeparator()
        self._menu_action(file, "Save &screenshot…", "Ctrl+Alt+S", self._screenshot_dialog)  # Save as has Ctrl+Shift+S
        file.addSeparator()
        self._menu_action(file, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        debug = bar.addMenu("&Debug")
        self.debug_menu = debug
        for act in self.debug.all:
            debug.addAction(act)
        debug.addAction(self.debug.stop_run)
        debug.addSeparator()
        debug.addAction(self.debug.toggle_breakpoint)
        self.debug.toggle_breakpoint.triggered.connect(self._toggle_selected_breakpoint)
        self._menu_action(debug, "Clear all breakpoints", None, self._clear_breakpoints)
        debug.addSeparator()
        self.loss_menu = debug.addMenu("&Loss")
        self.loss_menu.setObjectName("lossMenu")
        self.loss_menu.setToolTipsVisible(True)
        self.loss_actions = QActionGroup(self)
        for name, label in (("none", "None: forward only"), *((n, LOSS_LABELS.get(n, n)) for n in LOSSES)):
            act = QAction(label, self.loss_actions, checkable=True)
            act.setData(name)
            if name in CATALOG:
                act.setToolTip(f"{name}: {CATALOG[name].summary}")
            self.loss_menu.addAction(act)
        act = QAction("Cross-entropy per &token (language model)", self.loss_actions, checkable=True)
        act.setData(PER_TOKEN)
        act.setToolTip("(batch, tokens, vocabulary) logits read as a row per token against (batch, tokens) labels, "
                       "as a language model's loss reads them (torch's cross-entropy takes classes on axis 1)")
        self.loss_menu.addAction(act)
        self.per_token_action = act
        # one slot for the group, not a lambda with a default argument per action (PySide 6.11 has lost references
        # to such lambdas; see canvas/breadcrumbs.py)
        self.loss_actions.triggered.connect(lambda action: self._loss_chosen(str(action.data())))
        # a model with several outputs (an auxiliary head, start and end logits): which one the loss goes on
        self.output_menu = debug.addMenu("Loss on &output")
        self.output_menu.setObjectName("outputMenu")
        self.output_actions = QActionGroup(self)
        self.output_actions.triggered.connect(lambda action: self._output_chosen(str(action.data())))
        self.compare_action = self._menu_action(debug, "Compare &backends", "Ctrl+B", self.compare_backends)
        if torch_available():
            self.compare_action.setToolTip("Run the current step on NumPy and on PyTorch; colour nodes by difference")
        else:
            self.compare_action.setEnabled(False)
            self.compare_action.setToolTip(f"Needs PyTorch: {TORCH_INSTALL}")
            self.compare_action.setText(f"Compare backends (needs PyTorch: {TORCH_INSTALL})")
        view = bar.addMenu("&View")
        self.view_menu = view
        self.projector_action = self._menu_action(view, "&Projector mode", "F11", None, checkable=True)
        self.projector_action.setToolTip("Big type, high contrast, the current step kept centred")
        self.projector_action.toggled.connect(self.set_projector)
        view.addAction(self.debug.break_nonfinite)
        view.addSeparator()
        fit = self._menu_action(view, "&Fit graph", "F", self.canvas.fit)
        self.addAction(fit)
        # Ctrl+= too: Qt matches Ctrl++ only when Shift is held, and that key unshifted is = on a US keyboard
        self._menu_action(view, "Zoom &in", [QKeySequence.StandardKey.ZoomIn, "Ctrl+="],
                          lambda: self.canvas.set_zoom(self.canvas.zoom() * 1.25))
        self._menu_action(view, "Zoom &out", QKeySequence.StandardKey.ZoomOut,
                          lambda: self.canvas.set_zoom(self.canvas.zoom() / 1.25))
        view.addSeparator()
        self._menu_action(view, "Fold all modules", "Ctrl+Shift+F", lambda: self.canvas.fold_all(True))
        self._menu_action(view, "Unfold all modules", "Ctrl+Shift+U", lambda: self.canvas.fold_all(False))
        view.addSeparator()
        for dock in (self.inspector_dock, self.chain_dock, self.steps_dock, self.training_dock, self.neurons_dock):
            view.addAction(dock.toggleViewAction())
        view.addAction(self.layer_dock.toggleViewAction())
        self._menu_action(view, "Reset window layout", None, lambda: self.restoreState(self._default_state,
                                                                                       LAYOUT_VERSION))
        add_help_menu(self)

    def _menu_action(self, menu: Any, text: str, key: Any, slot: Any, checkable: bool = False) -> QAction:
        act = QAction(text, self)
        if isinstance(key, list):  # several keys, the first shown in the menu
            act.setShortcuts([QKeySequence(k) for k in key])
        elif key is not None:
            act.setShortcut(QKeySequence(key))
        act.setCheckable(checkable)
        if slot is not None:
            act.triggered.connect(lambda _c=False: slot())
        menu.addAction(act)
        self.addAction(act)
        return act

    def _build_status(self) -> None:
        self.position = QLabel()
        self.position.setObjectName("position")
        self.status_message = ElidedLabel()
        self.status_message.setObjectName("statusMessage")
        self.statusBar().addWidget(self.position)
        self.statusBar().addWidget(self.status_message, 1)
        # a long Run to end or Continue (gui/actions.SlicedRun): how far it got, and Esc to stop it there
        self.run_progress = QProgressBar()
        self.run_progress.setObjectName("runProgress")
        self.run_progress.setTextVisible(False)  # the count is in the message, sized in either theme's type
        self.run_progress.setMaximumWidth(160)
        self.run_progress.hide()
        self.statusBar().addPermanentWidget(self.run_progress)
        self.debug.sliced.progressed.connect(self._run_progressed)
        self.debug.sliced.ended.connect(self._run_ended)

    def _run_progressed(self, done: int, total: int, label: str) -> None:
        self.run_progress.show()
        self.run_progress.setRange(0, max(1, total))
        self.run_progress.setValue(done)
        self.message(f"{label}: {done:,}/{total:,} steps (Esc stops)")

    def _run_ended(self) -> None:
        if self.run_progress.isVisible():
            self.run_progress.hide()
            if self.status_message.text().endswith("(Esc stops)"):
                self.message("")

    # -- session events ----------------------------------------------------------------------
    def _cursor_moved(self, cursor: int) -> None:
        s = self.bridge.session
        record = s.current
        if record is not None:
            self.selection.follow(record.node.name, record.node.shape)
        self.position.setText(s.position_text())
        if cursor == 0 or s.last_stop is None or s.last_stop.step is not record:
            self.message("")

    def _breakpoint_hit(self, stop: Any) -> None:
        self.message(f"Stopped: {stop.reason}")

    def _session_changed(self, session: Session) -> None:
        s = self.bridge.session
        self._offer_layer_view(s)
        self.position.setText(s.position_text())
        # a module traced along the path its inputs took (graph/readers/decisions.py): said as long as it is shown
        path = f" · the path its inputs took ({len(s.model.decisions)} decisions by value)" if s.model.decisions else ""
        self.setWindowTitle(f"propscope — {s.name} ({s.backend.name}/{s.backend.dtype}){path}")
        key = backend_key(s.backend)
        if self.backend_box.findData(key) < 0 and key != s.backend.name:
            self.backend_box.addItem(f"{BACKEND_LABELS.get(s.backend.name, s.backend.name)} {s.backend.device}", key)
        self.backend_box.setCurrentIndex(max(0, self.backend_box.findData(key)))
        self.dtype_box.setCurrentIndex(max(0, self.dtype_box.findText(str(s.backend.dtype))))
        chosen = loss_choice(s)
        for action in self.loss_actions.actions():
            action.setChecked(action.data() == chosen)
        self.per_token_action.setEnabled(chosen == PER_TOKEN or len(s.prediction_node.shape) >= 3)
        self._list_outputs(s)
        i = self.example_box.findData(s.name) if s.source == s.name else -1  # a file may share an example's name
        if i < 0:
            if self.example_box.findData("") < 0:
                self.example_box.addItem("(file)", "")
            i = self.example_box.findData("")
        self.example_box.setCurrentIndex(i)
        record = s.current
        node = record.node if record is not None else s.graph.output
        self.selection.select(node.name)

    def message(self, text: str, details: str = "") -> None:
        """The status bar's message; `details` (else the message itself) in its tooltip, where a long one is read
        whole."""
        self.status_message.setText(text)
        self.status_message.setToolTip(details or text)

    # -- backend, examples, files -------------------------------------------------------------
    def _backend_chosen(self) -> Job | None:
        """Make the backend in a job (importing torch takes seconds), then switch on this thread,
        keeping the cursor; on failure a dialog, and the session stays on its backend."""
        key = str(self.backend_box.currentData())
        name, _, device = key.partition(":")
        device = device or "cpu"
        dtype = self.dtype_box.currentText()
        s = self.bridge.session
        if (key, dtype) == (backend_key(s.backend), str(s.backend.dtype)):
            return None

        cursor = s.cursor

        def prepare() -> BackendTrace:  # the pass up to the cursor on the new backend, here: seconds on a big model
            return s.prepare_backend(get_backend(name, dtype, device), cursor)

        def switch(prepared: BackendTrace) -> None:
            if self.bridge.session is s:
                s.set_backend(prepared.backend, prepared)
            if prepared.backend.name == "torch":
                self._offer_devices()
            self._session_changed(self.bridge.session)

        job = self._start(Job(f"Starting the {BACKEND_LABELS.get(name, name)} backend…", prepare, self),
                          switch, "Cannot switch backend")
        self._resync_if_not_done(job)
        return job

    def _loss_chosen(self, loss: str) -> Job | None:
        """Attach the loss chosen in Debug ▸ Loss ("none": forward only) in a job, then install the new session;
        its target is the data's where it fits, else drawn, which the status bar says."""
        s = self.bridge.session
        if loss == loss_choice(s):
            return None

        def work() -> tuple[Session, Layout, Folding, bool]:
            session, drawn = s.with_per_token() if loss == PER_TOKEN else s.with_loss(loss)
            folding = Folding.of(session.graph)
            return session, folding.layout(), folding, drawn

        def done(result: tuple[Session, Layout, Folding, bool]) -> None:
            session, layout, folding, drawn = result
            self.install(session, layout, folding)
            self._forward_only_for = session.model if loss == "none" else None
            said = "forward only" if loss == "none" else f"the {loss} loss"
            pred = session.prediction_node.shape
            if loss == "cross_entropy" and len(pred) == 3 and pred[2] > pred[1]:  # (batch, tokens, vocabulary)?
                said += (f", classes on axis 1 as torch's ({pred[1]} classes at {pred[2]} positions; a language "
                         "model's logits: Cross-entropy per token)")
            labels = session.user_labels
            kept = f"; your labels y {fmt(labels.shape)} do not fit it and are kept for a loss they fit" \
                if labels is not None else ": File ▸ Load data gives your own"
            self.message(f"Now {said}" + (f"; its target y is drawn at random{kept}" if drawn else ""))

        job = self._start(Job("Attaching the loss…", work, self), done, f"Cannot use the {loss} loss")
        self._resync_if_not_done(job)
        return job

    def _list_outputs(self, s: Session) -> None:
        """Debug ▸ Loss on output: the model's outputs in the file's order, the prediction's checked; the menu is
        there only for a model with several."""
        order = s.model.output_order or tuple(o.name for o in s.model.graph.outputs)
        current = s.model.graph.output.name
        for action in self.output_actions.actions():
            self.output_actions.removeAction(action)
            self.output_menu.removeAction(action)
            action.deleteLater()
        for name in order:
            node = s.model.graph[name]
            act = QAction(f"{output_name(node)}  {fmt(node.shape)}", self.output_actions, checkable=True)
            act.setData(name)
            act.setChecked(name == current)
            self.output_menu.addAction(act)
        self.output_menu.menuAction().setVisible(len(order) > 1)
        self.output_menu.setEnabled(len(order) > 1 and not self.jobs)

    def _output_chosen(self, name: str) -> Job | None:
        """Move the loss to the output chosen in Debug ▸ Loss on output, in a job; a forward-only session just shows
        that output as its prediction."""
        s = self.bridge.session
        if name == s.model.graph.output.name:
            return None

        def work() -> tuple[Session, Layout, Folding, bool]:
            session, drawn = s.with_output(name)
            folding = Folding.of(session.graph)
            return session, folding.layout(), folding, drawn

        def done(result: tuple[Session, Layout, Folding, bool]) -> None:
            session, layout, folding, drawn = result
            self.install(session, layout, folding)
            shown = output_name(session.prediction_node)
            said = f"The {session.loss_name} loss is now on {shown}" if session.loss_name else f"Now showing {shown}"
            self.message(said + ("; its target y is drawn at random: File ▸ Load data gives your own" if drawn else ""))

        job = self._start(Job("Moving the loss…", work, self), done, "Cannot move the loss to that output")
        self._resync_if_not_done(job)
        return job

    def open_example(self, name: str) -> Job:
        """Open a built-in example in a job (one of them imports torch, which takes seconds)."""
        s = self.bridge.session
        backend, dtype, seed = s.backend.name, str(s.backend.dtype), self.seed

        device = str(s.backend.device)

        def work() -> tuple[Session, Layout, Folding]:
            session = open_session(name, backend=backend, dtype=dtype, seed=seed, device=device)
            folding = Folding.of(session.graph)
            return session, folding.layout(), folding

        job = self._start(Job(f"Opening {name}…", work, self), lambda result: self.install(*result),
                          f"Cannot open example {name}")
        self._resync_if_not_done(job)
        return job

    def install(self, session: Session, layout: Layout | None = None, folding: Folding | None = None) -> None:
        """Observe a new session (the old one is dropped as it was)."""
        self.debug.autoplay.stop()
        if layout is not None:
            self.canvas.set_layout(session.graph, layout, folding)
        self.selection.select(None)
        self.bridge.set_session(session)

    def open_path(self, path: str | Path, arch: str | None = None,
                  input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Job | None:
        """Open a model file off the GUI thread (progress and Cancel after a moment); on failure a dialog
        saying what is wrong with the file, and the current session is kept. A state dict first asks
        for its architecture (`arch` skips the question) and then shows what matched; a file that records no input
        shape (a scripted TorchScript archive) first asks for its inputs' shapes (`input_shapes` skips it)."""
        if is_state_dict(path) and not arch:
            current = self.bridge.session.name if self.bridge.session.name in EXAMPLES else ""
            arch_dialog = ArchDialog(str(path), current, self)
            arch_dialog.chosen.connect(lambda chosen: self.open_path(path, chosen))
            return self._ask_first(arch_dialog)
        if input_shapes is None and not arch and asks_input_shapes(path):
            shape_dialog = InputShapeDialog(path, self)
            shape_dialog.chosen.connect(lambda shapes: self.open_path(path, input_shapes=shapes))
            return self._ask_first(shape_dialog)
        s = self.bridge.session
        backend, dtype, device, seed = s.backend.name, str(s.backend.dtype), str(s.backend.device), self.seed
        name = Path(path).name if Path(path).name != "config.json" else display_name(path)  # a checkpoint: its folder
        job = Job(f"Opening {name}…", lambda: load_file(path, backend, dtype, device, arch, seed, input_shapes), self)
        job = self._start(job, self._opened, f"Cannot open {name}")
        self._resync_if_not_done(job)
        return job

    def _ask_first(self, dialog: QDialog) -> None:
        """Show the question a file needs answered before it opens; its answer opens it (Cancel: nothing changes)."""
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.open_dialog = dialog
        dialog.open()

    def _opened(self, loaded: Loaded) -> None:
        """A file opened: install it, remember it, and say what a reader could not map."""
        self.install(loaded.session, loaded.layout, loaded.folding)
        self.recent.add(loaded.path)
        self.last_report = loaded.report
        if loaded.report is not None:
            dialog = ReportDialog(loaded.report, self)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            self.report_dialog = dialog
            dialog.show()
        blocked = unsupported_summary(loaded.session.graph)
        if blocked:
            self.show_warning("Unsupported ops", blocked)
        others = [w for w in loaded.session.model.warnings if w != blocked]
        note = loaded.session.model.outputs_note
        if note and loaded.session.loss_name:
            others.append(f"{note} (Debug ▸ Loss on output picks another)")
        self.message(others[0] if others else f"Opened {Path(loaded.path).name}")

    def _resync_if_not_done(self, job: Job) -> None:
        """A job that fails or is cancelled leaves the session as it was: the toolbar and menus show it again, not
        the choice that started the job."""
        job.failed.connect(lambda _e: self._session_changed(self.bridge.session))
        job.cancelled.connect(lambda: self._session_changed(self.bridge.session))

    def _start(self, job: Job, done: Any, error_title: str) -> Job:
        self.jobs.append(job)
        self._set_busy()

        def finish() -> None:
            if job in self.jobs:
                self.jobs.remove(job)
            self._set_busy()

        job.finished.connect(lambda result: (finish(), done(result)))
        job.failed.connect(lambda exc: (finish(), self.show_error(error_title, _describe(exc))))
        job.cancelled.connect(lambda: (finish(), self.message("Cancelled.")))
        return job.start()

    def _set_busy(self) -> None:
        """While a job or a training run works on the session, nothing may replace it or its backend."""
        training = getattr(self, "training", None)
        busy = bool(self.jobs) or (training is not None and training.runner.busy)
        for w in (self.backend_box, self.dtype_box, self.example_box):
            w.setEnabled(not busy)
        self.loss_menu.setEnabled(not busy)
        self.output_menu.setEnabled(not busy and len(self.output_actions.actions()) > 1)
        # every way to another session: a second open while one loads replaced the model, the last to finish won
        for action in (self.open_action, self.architecture_action, self.data_action):
            action.setEnabled(not busy)
        for act in self.file_menu.actions():  # Open recent, and File ▸ Lessons (added by gui/lessons)
            if act.menu() is not None and act.menu().objectName() in ("recentMenu", "lessonsMenu"):
                act.menu().setEnabled(not busy)

    def save_path(self, path: str | Path) -> bool | Job:
        """Save what the session holds (`Session.saved_model`: the loss, the data, the trained parameters) to `path`.
        A big model is compressed in a job (ResNet-18 took 1.5 s, the window frozen): its arrays are copied first, so
        nothing done meanwhile changes what is written, and Cancel leaves no file. True when saved here, the job when
        saving in one, False on failure (said in a dialog)."""
        try:
            model = self.bridge.session.saved_model()
            if _array_bytes(model) >= SAVE_IN_JOB_BYTES:
                job = Job(f"Saving {Path(path).name}…",
                          lambda: save_model(model, path, cancelled=lambda: job.was_cancelled), self)
                return self._start(job, lambda written: self.message(f"Saved {written}"), "Cannot save")
            written = save_model(model, path)
        except (PropscopeError, OSError) as exc:
            self.show_error("Cannot save", _describe(exc))
            return False
        self.message(f"Saved {written}")
        return True

    def _architecture_dialog(self) -> None:
        dialog = ArchitectureDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.chosen.connect(self.open_path)
        self.architecture_dialog = dialog
        dialog.open()

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", "", open_filter())
        if path:
            self.open_path(path)

    # -- dropping a file, data, devices ------------------------------------------------------------
    @guarded
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if len(urls) == 1 and urls[0].isLocalFile() and is_model_file(urls[0].toLocalFile()) and not self.jobs:
            event.acceptProposedAction()
        else:
            event.ignore()

    @guarded
    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        if len(urls) == 1 and urls[0].isLocalFile():
            event.acceptProposedAction()
            self.open_path(urls[0].toLocalFile())

    def _data_dialog(self) -> None:
        dialog = DataDialog(self.bridge.session, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def done() -> None:
            if dialog.generate.isChecked():
                self.generate_batch(dialog.seed.value())
            else:
                label = dialog.label.value()
                self.load_data_path(dialog.path.text().strip(), dialog.normalize.currentData(),
                                    label if label >= 0 else None)

        dialog.accepted.connect(done)
        self.data_dialog = dialog
        dialog.open()

    def load_data_path(self, path: str | Path, normalize: str | None = None, label: int | None = None) -> bool:
        """Run the model on a data file; a file that does not fit leaves the session as it was. Where the model is
        read again at the data's sizes (a transformers folder traced again: seconds), that runs in a job first. An
        image's pixels / 255 are normalized as `normalize` says (`normalization_for`: the model's own by default),
        and `label` is its class (else one is drawn)."""
        s = self.bridge.session
        norm = None
        try:  # an image is resized to the model's image input
            if is_image(path):
                norm = normalization_for(normalize, s.model)
                batch = image_batch(path, s.graph.inputs, norm, s.model.image_fit)
            else:
                batch = load_data(path)
        except PropscopeError as exc:
            self.show_error("Cannot use this data", _describe(exc))
            return False
        draw = is_image(path) and s.loss_name is not None  # a photo has no label: one is drawn, at its sizes
        shapes = {k: tuple(v.shape) for k, v in batch.items()}
        if not s.reads_again_at(shapes, batch):  # its sizes, or a branch one of its values picks (a merged decoder's)
            return self._use_batch(path, batch, draw, norm, label)

        def done(_model: Any) -> None:
            if self.bridge.session is s:
                self._use_batch(path, batch, draw, norm, label)

        self._start(Job(f"Reading {s.name} at the data's sizes…", lambda: s.model_at(shapes, batch), self), done,
                    "Cannot use this data")
        return True

    def _use_batch(self, path: str | Path, batch: dict[str, Any], draw_target: bool = False,
                   normalization: Any = None, label: int | None = None) -> bool:
        """The data in the session; `draw_target`: a target is drawn for it (a photo), on the model at its sizes
        (read at them already, where they needed it), or made of `label` where the loss is a cross-entropy."""
        s = self.bridge.session
        per_token = s.prediction_node.meta.get("per_token")
        given = label if s.loss_name == "cross_entropy" else None
        target_drawn = draw_target and s.loss_name is not None and given is None
        try:
            if draw_target and s.loss_name is not None:
                shapes = {k: tuple(v.shape) for k, v in batch.items()}
                batch = with_drawn_target(s.model_at(shapes, batch), batch, str(s.loss_name), s.data_seed, given)
            self.bridge.set_batch(batch, target_drawn)
        except PropscopeError as exc:
            self.show_error("Cannot use this data", _describe(exc))
            return False
        rows = s.prediction_node
        said = "" if per_token or not rows.meta.get("per_token") else \
            f"; its (batch, tokens) labels read the logits {fmt(rows.inputs[0].shape)} a row per token"
        details = ""
        if is_image(path):  # how its pixels became the input, its class (the whole story in the tooltip)
            brief, whole = s.photo_notes(path, target_drawn, given if draw_target else None, normalization,
                                         yours="the Load data dialog's class")
            said += f" ({brief[0]})" + "".join(f"; {b}" for b in brief[1:])
            details = "\n".join(whole)
        nonfinite = nonfinite_note(s.batch)  # a NaN in the data, said before any op is blamed for it
        self.message(f"Data from {Path(path).name}: {self._batch_text()}{said}"
                     f"{'; warning: ' + nonfinite if nonfinite else ''}", details)
        labels = batch.get(TARGET)
        if s.loss_name is None and s.model.loss is None and labels is not None \
                and self._forward_only_for is not s.model:
            loss = loss_for_labels(labels, rows.shape)  # labels for a model without a loss: the backward pass too
            if loss is not None:
                self._loss_chosen(loss)
        return True

    def generate_batch(self, seed: int = 0) -> bool:
        """A random batch of the declared input shapes (ids in range for embeddings), and a target."""
        s = self.bridge.session
        try:
            self.bridge.set_batch(example_batch(s.model.graph, seed, s.loss_name))
        except PropscopeError as exc:
            self.show_error("Cannot generate data", _describe(exc))
            return False
        self.message(f"Generated data (seed {seed}): {self._batch_text()}")
        return True

    def _batch_text(self) -> str:
        return ", ".join(f"{k} {'×'.join(map(str, v.shape)) or 'scalar'}" for k, v in self.bridge.session.batch.items())

    def _offer_devices(self) -> None:
        """Add the GPUs PyTorch can use to the backend choice (never one that is not there)."""
        for device in backend_devices("torch"):
            key = f"torch:{device}"
            if device != "cpu" and self.backend_box.findData(key) < 0:
                self.backend_box.addItem(f"PyTorch {device.upper()}", key)

    def _step_failed(self, why: str) -> None:
        self.message(f"Stopped: {why}")
        self.last_error = why

    def _offer_layer_view(self, s: Session) -> None:
        """The layer view's tab is there only for models with a convolution, a recurrent layer or attention
        (hidden here for the others, and shown again; a dock the user closed stays closed)."""
        has = bool(fitting_nodes(s.graph))
        if not has and not self.layer_dock.isHidden() and not self.layer_dock.isFloating():
            self.layer_dock.hide()
            self._layer_hidden = True
        elif has and self._layer_hidden:
            self._layer_hidden = False
            self.layer_dock.show()

    def _layer_fit(self, fits: bool) -> None:
        """The layer view comes forward while the selected node has one, and steps back after."""
        if fits and not self.layer_dock.isHidden() and not self.layer_dock.isFloating():
            self.layer_dock.raise_()
            self._layer_raised = True
            want = self.themes.theme.px(420)
            if not self._layer_widened and self.layer_dock.width() < want:  # once: maps need more room
                self._layer_widened = True
                self.resizeDocks([self.layer_dock], [want], Qt.Orientation.Horizontal)
        elif not fits and self._layer_raised:
            self._layer_raised = False
            self.inspector_dock.raise_()

    # -- comparing backends --------------------------------------------------------------------------
    def compare_backends(self) -> Job | None:
        """Run the pass up to the cursor on the other backend in a job; show it in the Diff dock."""
        s = self.bridge.session
        other = "numpy" if s.backend.name == "torch" else "torch"
        dtype = str(s.backend.dtype)
        if other == "torch" and not torch_available():
            self.show_error("Cannot compare backends", f"PyTorch is not installed: {TORCH_INSTALL}")
            return None
        cursor = s.cursor
        if cursor:
            s.trace.compute_through(cursor - 1)  # here, so the job only reads the session's trace
            try:  # the other backend keeps as much again: refused before it runs, where both would not fit
                s.trace.estimate(cursor - 1, backends=2).check(s.trace.budget.limit)
            except PropscopeError as exc:  # memory.PassMemoryError
                self.show_error("Cannot compare backends", str(exc))
                return None
        from ..debugger.diff import diff_backends

        def work() -> GraphDiff:
            return diff_backends(s, get_backend(other, dtype, "cpu"), cursor)

        def done(result: GraphDiff) -> None:
            if self.bridge.session is s:
                self.show_comparison(result)

        job = self._start(Job(f"Comparing {s.backend.name} with {other}…", work, self), done,
                          "Cannot compare backends")
        return job

    def show_comparison(self, result: GraphDiff) -> None:
        """The two backends' runs in the Diff dock (gui/diff), with the tolerance verdict."""
        from .diff.view import backend_status  # the Diff dock's view: loaded when first shown, not at start

        show_backends(self, result)
        c = result.comparison
        if c is not None:
            self.message(backend_status(c))  # "Compared at step N: largest difference …", or why there is nothing

    def clear_comparison(self) -> None:
        self.diff_view.clear()

    def _save_dialog(self) -> None:
        name = f"{self.bridge.session.name}.propscope"
        path, _ = QFileDialog.getSaveFileName(self, "Save model", name, "propscope models (*.propscope)")
        if path:
            self.save_path(path)

    def _screenshot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "propscope.png", "PNG images (*.png)")
        if path:
            self.grab().save(path)

    # -- breakpoints, explain -------------------------------------------------------------------
    def _toggle_selected_breakpoint(self) -> None:
        if self.selection.node is not None:
            on = self.bridge.toggle_breakpoint(self.selection.node)
            self.message(f"Breakpoint {'set on' if on else 'cleared from'} {self.selection.node}")

    def _clear_breakpoints(self) -> None:
        for name in list(self.bridge.session.node_breakpoints()):
            self.bridge.toggle_breakpoint(name)

    def explain(self, name: str, index: Any) -> Job | None:
        """Explain one gradient element in a job; the whole pass is computed first, on this thread (a slice at a
        time between events where it is long, the cursor staying), so the job only reads the trace while the user
        keeps stepping. The job, or None where the pass is still being computed (it starts when that is done)."""
        s = self.bridge.session
        from .format import fit_index

        element = fit_index(index, s.graph[name].shape)

        def start() -> Job:
            job = Job(f"Explaining ∂L/∂{name}…", lambda: s.explain(name, element), self)
            return self._start(job, self._show_explanation, "Cannot explain this gradient")

        if s.trace.computed >= len(s.steps):
            return start()
        try:
            run = s.start_run(move=False)
        except PropscopeError as exc:  # more than the memory budget allows
            self.show_error("Cannot explain this gradient", _describe(exc))
            return None
        self.debug.sliced.start(run, f"Computing the pass to explain ∂L/∂{name}", then=start)
        return None

    def _show_explanation(self, explanation: Any) -> None:
        dialog = ExplainDialog(explanation, self.themes.theme.colors, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.explain_dialog = dialog
        dialog.show()

    # -- theme and errors -------------------------------------------------------------------------
    def set_projector(self, on: bool, full_screen: bool = True) -> None:
        """Projector mode (see `projector.py`); `full_screen=False` keeps the window's size (screenshots)."""
        if self.projector_action.isChecked() != on:
            self._projector_full_screen = full_screen
            self.projector_action.setChecked(on)  # re-enters through the toggled signal
            return
        self.projector.set(on, full_screen=getattr(self, "_projector_full_screen", True))
        self._projector_full_screen = True

    @guarded
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.projector.window_resized()  # projector type is sized by the window's height

    def _theme_changed(self) -> None:
        size = self.themes.theme.px(20)
        self.toolbar.setIconSize(QSize(size, size))
        self._arrange_neurons()

    def _arrange_neurons(self, drawable: bool | None = None) -> None:
        """The neuron view gets its own place under the inspector only where it has room and something to draw.

        In projector mode (1024×768) or for a network it cannot draw, it becomes one of the inspector's tabs.
        """
        if drawable is not None:
            self._neurons_drawable = drawable
        if not hasattr(self, "neurons_dock"):
            return
        tabbed = bool(self.tabifiedDockWidgets(self.neurons_dock))
        if self.themes.projector or not getattr(self, "_neurons_drawable", True):
            if not tabbed:
                tabify(self, self.inspector_dock, self.neurons_dock)
                self.inspector_dock.raise_()
        elif tabbed:
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.neurons_dock, Qt.Orientation.Vertical)
            self._share_right_column()

    def _share_right_column(self) -> None:
        """The inspector's group over the neuron view, half the column each, as before the layer view scrolled: its
        value and gradient both in sight (Qt would share by size hints, and the layer view's rows now scroll)."""
        if not self.tabifiedDockWidgets(self.neurons_dock):
            height = max(self.height(), self.themes.theme.px(600))
            self.resizeDocks([self.inspector_dock, self.neurons_dock], [height // 2, height // 2],
                             Qt.Orientation.Vertical)

    def show_warning(self, title: str, text: str) -> None:
        """Like `show_error`, for a file that opened with something left out (unsupported ops)."""
        self.last_warning = text
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.warning_box = box

    def show_error(self, title: str, text: str) -> None:
        """A dialog that does not block (tests and screenshots go on); the session is untouched."""
        self.last_error = text
        box = QMessageBox(QMessageBox.Icon.Critical, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.error_box = box

    # -- the memory budget for opening files (graph/readers/_budget.py) ------------------------------------
    def _memory_dialog(self) -> None:
        current = max_memory_override()
        text, ok = QInputDialog.getText(
            self, "Memory budget",
            "The most memory opening one model file may use (weights, folded constants, unpacked members), and\n"
            "the most one pass may keep (values and gradients: Run to end, Compare backends, Gradient flow).\n"
            f"A size such as 2G or 512M; empty for the default, half the available memory "
            f"({human(default_budget())} now).",
            text="" if current is None else human(current).replace(" ", "").replace(".0", ""),
        )
        if ok:
            self.set_memory_budget(text)

    def set_memory_budget(self, text: str) -> bool:
        """Set (and remember) the budget from a size such as `2G`; empty goes back to the default."""
        text = text.strip()
        try:
            set_max_memory(parse_size(text) if text else None)
        except ValueError as exc:
            self.show_error("Memory budget", f"Memory budget: {exc}")
            return False
        if self.settings is not None:
            self.settings.setValue(MEMORY_KEY, text)
        self.message(f"Opening a file, or one pass, may use up to {human(current_limit())}")
        return True

    # -- layout persistence ---------------------------------------------------------------------------
    def _restore(self) -> None:
        if self.settings is None:
            return
        budget = self.settings.value(MEMORY_KEY)
        if isinstance(budget, str) and budget and max_memory_override() is None:  # --max-memory wins for its run
            with contextlib.suppress(ValueError):  # a hand-edited settings file: the default stays
                set_max_memory(parse_size(budget))
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state, LAYOUT_VERSION)
        pace = self.settings.value("autoplay/pace")
        if pace is not None:
            self.pace.setValue(float(pace))  # type: ignore[arg-type]

    def save_settings(self) -> None:
        if self.settings is None:
            return
        if self._layer_hidden:  # saved as the user left it, not as the last model needed
            self._layer_hidden = False
            self.layer_dock.show()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(LAYOUT_VERSION))
        self.settings.setValue("autoplay/pace", self.pace.value())
        self.settings.sync()

    @guarded
    def closeEvent(self, event: QCloseEvent) -> None:
        self.debug.autoplay.stop()
        self.training.shutdown()
        self.projector.window_closed()
        Job.cancel_all(list(self.jobs))  # and their threads end, or nearly: a notebook goes on with the session
        self.save_settings()
        self.bridge.close()
        if self._own_themes:
            self.themes.restore()
        super().closeEvent(event)


SAVE_IN_JOB_BYTES = 16 * 2**20  # arrays this large take a moment to compress (~0.3 s): saved off the GUI thread


def _array_bytes(model: Any) -> int:
    return sum(int(getattr(a, "nbytes", 0)) for a in (*model.arrays.values(), *model.batch.values()))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PropscopeError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".strip(": ")
    return f"{type(exc).__name__}: {exc}"
