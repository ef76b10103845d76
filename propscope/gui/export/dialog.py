"""File > Export's dialog and its pass export: the pass (GIF, MP4, numbered PNGs), the graph (SVG, PNG), the
formula (LaTeX, PNG). Imported when first used (`menu.py`).

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
    QProgressDialog,
    QPushButton,
    QSpinBox,
)

from ...graph.errors import PropscopeError
from . import ExportOptions, pass_frames, session_copy, video_available
from .menu import KINDS, PASS_KINDS
from .writers import VIDEO_INSTALL


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
