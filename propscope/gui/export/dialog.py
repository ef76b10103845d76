"""File > Export in the app: the pass (GIF, MP4, numbered PNGs), the graph (SVG, PNG), the formula (LaTeX, PNG).

A pass is rendered from a copy of the session one frame per timer tick on the GUI thread (Qt pictures are
drawn there), with a progress dialog whose Cancel removes what was written; the window stays responsive
and its own cursor never moves.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMenu,
    QProgressDialog,
    QPushButton,
    QSpinBox,
)

from ...graph.errors import PropscopeError
from ..menus import menu_titled
from . import ExportOptions, export_formula, export_graph, pass_frames, session_copy, video_available
from .writers import VIDEO_INSTALL

KINDS = {  # what -> (label, suffix)
    "gif": ("The pass as an animated GIF", ".gif"),
    "mp4": ("The pass as an MP4 video", ".mp4"),
    "frames": ("The pass as numbered PNGs (a folder)", ""),
    "svg": ("The graph as SVG", ".svg"),
    "png": ("The graph as PNG", ".png"),
    "tex": ("The chain-rule formula as LaTeX", ".tex"),
    "formula-png": ("The chain-rule formula as PNG", ".png"),
}
PASS_KINDS = ("gif", "mp4", "frames")


class ExportDialog(QDialog):
    """What to export, where, at which size and style, and (for the pass) which steps."""

    def __init__(self, window: Any, kind: str = "gif") -> None:
        super().__init__(window)
        self.setWindowTitle("Export for slides")
        self.window_ = window
        s = window.bridge.session
        self.kind = QComboBox()
        self.kind.setObjectName("exportKind")
        for key, (label, _suffix) in KINDS.items():
            self.kind.addItem(label, key)
            if key == "mp4" and not video_available():
                i = self.kind.count() - 1
                self.kind.model().item(i).setEnabled(False)  # type: ignore[attr-defined]
                self.kind.setItemData(i, f"Needs an encoder: {VIDEO_INSTALL}", Qt.ItemDataRole.ToolTipRole)
        self.path = QLineEdit()
        self.path.setObjectName("exportPath")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        where = QHBoxLayout()
        where.addWidget(self.path, 1)
        where.addWidget(browse)
        self.width_box, self.height_box = QSpinBox(), QSpinBox()
        for box, value in ((self.width_box, 1280), (self.height_box, 720)):
            box.setRange(200, 7680)
            box.setValue(value)
            box.setSuffix(" px")
        size = QHBoxLayout()
        size.addWidget(self.width_box)
        size.addWidget(self.height_box)
        self.projector = QCheckBox("Projector style (high contrast, thick lines, big type)")
        self.projector.setChecked(bool(window.themes.projector))
        total = len(s.steps)
        self.first, self.last = QSpinBox(), QSpinBox()
        for box, value in ((self.first, 0), (self.last, total)):
            box.setRange(0, total)
            box.setValue(value)
        steps = QHBoxLayout()
        steps.addWidget(self.first)
        steps.addWidget(self.last)
        self.pace = QDoubleSpinBox()
        self.pace.setRange(0.05, 10.0)
        self.pace.setValue(0.8)
        self.pace.setSuffix(" s/frame")
        form = QFormLayout(self)
        form.addRow("Export", self.kind)
        form.addRow("To", where)
        form.addRow("Size", size)
        form.addRow("", self.projector)
        form.addRow("Steps (after A to after B)", steps)
        form.addRow("Pace", self.pace)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.kind.currentIndexChanged.connect(lambda _i: self._kind_changed())
        self.kind.setCurrentIndex(max(0, self.kind.findData(kind)))
        self._kind_changed()

    def chosen(self) -> str:
        return str(self.kind.currentData())

    def _kind_changed(self) -> None:
        key = self.chosen()
        is_pass = key in PASS_KINDS
        for w in (self.first, self.last, self.pace):
            w.setEnabled(is_pass)
        suffix = KINDS[key][1]
        name = self.window_.bridge.session.name.replace("/", "_").replace(".", "_") or "propscope"
        stem = Path(self.path.text()).with_suffix("").name if self.path.text() else f"{name}-{key}"
        folder = Path(self.path.text()).parent if self.path.text() else Path.cwd()
        self.path.setText(str(folder / f"{stem}{suffix}"))

    def _browse(self) -> None:
        key = self.chosen()
        if key == "frames":
            path = QFileDialog.getExistingDirectory(self, "Folder for the frames")
        else:
            suffix = KINDS[key][1]
            path, _ = QFileDialog.getSaveFileName(self, "Export", self.path.text(), f"*{suffix}")
        if path:
            self.path.setText(path)

    def options(self) -> ExportOptions:
        return ExportOptions((self.width_box.value(), self.height_box.value()), self.projector.isChecked(),
                             self.first.value(), max(self.first.value(), self.last.value()), self.pace.value())


class PassExport(QObject):
    """Renders a pass frame by frame from a timer, with progress and Cancel."""

    finished = Signal(object)  # the path written, or None when cancelled or failed
    failed = Signal(str)

    def __init__(self, window: Any, out: str | Path, options: ExportOptions) -> None:
        super().__init__(window)
        self.window_ = window
        self.out = Path(out)
        self.session = session_copy(window.bridge.session)
        self.frames: Generator[tuple[int, int], None, None] = pass_frames(self.session, self.out, options)
        total = len(options.frames(self.session))
        self.dialog = QProgressDialog(f"Exporting {total} frames to {self.out.name}…", "Cancel", 0, total, window)
        self.dialog.setWindowTitle("propscope")
        self.dialog.setWindowModality(Qt.WindowModality.WindowModal)
        self.dialog.setMinimumDuration(300)
        self.dialog.canceled.connect(self.cancel)
        self.timer = QTimer(self)
        self.timer.setInterval(0)
        self.timer.timeout.connect(self._tick)
        self.done = False

    def start(self) -> PassExport:
        self.timer.start()
        return self

    def _tick(self) -> None:
        try:
            done, _total = next(self.frames)
        except StopIteration:
            self._finish(self.out)
            return
        except (PropscopeError, OSError) as exc:
            self._finish(None)
            self.failed.emit(str(exc))
            return
        self.dialog.setValue(done)

    def cancel(self) -> None:
        if not self.done:
            self.frames.close()  # the writer removes what it wrote
            self._finish(None)

    def _finish(self, path: Path | None) -> None:
        self.done = True
        self.timer.stop()
        self.dialog.canceled.disconnect(self.cancel)
        self.dialog.close()
        self.finished.emit(path)


class ExportActions(QObject):
    """File ▸ Export: the dialog (Ctrl+E), the graph as SVG (Ctrl+Shift+E) or PNG (Ctrl+Alt+E), the formula."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.running: PassExport | None = None
        file_menu = menu_titled(window, "File")
        assert file_menu is not None
        menu = QMenu("&Export", window)
        menu.setObjectName("exportMenu")
        before = next((a for a in file_menu.actions() if a.text() == "&Quit"), None)
        file_menu.insertMenu(before, menu)
        self.menu = menu
        self.dialog_action = self._action(menu, "Export for &slides…", "Ctrl+E", self.open_dialog)
        self.svg_action = self._action(menu, "Graph as &SVG…", "Ctrl+Shift+E", lambda: self._quick("svg"))
        self.png_action = self._action(menu, "Graph as &PNG…", "Ctrl+Alt+E", lambda: self._quick("png"))
        self._action(menu, "Chain-rule formula as &LaTeX…", None, lambda: self._quick("tex"))
        self._action(menu, "Chain-rule formula as PNG…", None, lambda: self._quick("formula-png"))

    def _action(self, menu: QMenu, text: str, key: str | None, slot: Any) -> Any:
        return self.window._menu_action(menu, text, key, slot)

    def open_dialog(self, kind: str = "gif") -> ExportDialog:
        dialog = ExportDialog(self.window, kind)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.run(dialog.chosen(), dialog.path.text(), dialog.options()))
        self.window.export_dialog = dialog
        dialog.open()
        return dialog

    def _quick(self, kind: str) -> None:
        suffix = KINDS[kind][1]
        name = f"{self.window.bridge.session.name.replace('/', '_')}{suffix}"
        path, _ = QFileDialog.getSaveFileName(self.window, KINDS[kind][0], name, f"*{suffix}")
        if path:
            self.run(kind, path, ExportOptions(projector=bool(self.window.themes.projector)))

    def run(self, kind: str, path: str | Path, options: ExportOptions) -> PassExport | Path | None:
        """Export `kind` to `path`; a pass runs with progress (returned), the others are written at once."""
        w = self.window
        s = w.bridge.session
        try:
            if kind in PASS_KINDS:
                self.running = PassExport(w, path, options)
                self.running.finished.connect(self._pass_done)
                self.running.failed.connect(lambda why: w.show_error("Cannot export", why))
                return self.running.start()
            if kind in ("svg", "png"):
                written = export_graph(session_copy_at(s), path, options.size, options.projector)
            else:
                written = export_formula(s, path, w.selection.node, w.selection.index, options.size[0],
                                         options.projector)
        except (PropscopeError, OSError) as exc:
            w.show_error("Cannot export", str(exc))
            return None
        w.message(f"Exported {written}")
        return written

    def _pass_done(self, path: Path | None) -> None:
        self.window.message(f"Exported {path}" if path is not None else "Export cancelled.")


def session_copy_at(session: Any) -> Any:
    """A copy of `session` at its cursor (so the graph export shows the step on screen)."""
    copy = session_copy(session)
    copy.seek(session.cursor)
    return copy


def attach_export(window: Any) -> ExportActions:
    return ExportActions(window)
