"""File ▸ Export in the app: the pass (GIF, MP4, numbered PNGs), the graph (SVG, PNG), the formula (LaTeX, PNG).

The menu and its keys are the window's from the start; the dialog, the pass export (`dialog.py`) and the
drawing are imported when first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QFileDialog, QMenu

from ...graph.errors import PropscopeError
from . import ExportOptions, export_formula, export_graph, session_copy

if TYPE_CHECKING:
    from .dialog import ExportDialog, PassExport

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


class ExportActions(QObject):
    """File ▸ Export: the dialog (Ctrl+E), the graph as SVG (Ctrl+Shift+E) or PNG (Ctrl+Alt+E), the formula."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.running: PassExport | None = None
        file_menu = window.file_menu
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
        from .dialog import ExportDialog

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
                from .dialog import PassExport

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
