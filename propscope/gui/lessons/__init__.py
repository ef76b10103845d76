"""Lessons in the app: the Lesson dock, File ▸ Lessons, and `propscope lesson`.

`attach_lessons(window)` gives a `MainWindow` a Lesson dock (hidden until a lesson opens), View ▸ Lesson and a
File ▸ Lessons menu listing the built-in lessons when it is first opened. The dock's panel and the controller
that plays a lesson with the step keys (`panel.py`) are made, and their modules imported, when the dock is first
shown or `LessonDock.controller` first asks for them: the window starts without them.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMenu

from ...debugger import Session
from ..docks import LazyDock

if TYPE_CHECKING:
    from ...debugger.lessons import Lesson
    from .panel import LessonController


class LessonDock(LazyDock):
    """The Lesson dock; its panel and its `LessonController` are made when it is first shown or used."""

    def __init__(self, window: Any) -> None:
        super().__init__("Lesson", "lessonDock", self._make_controller, window)
        self.main_window = window
        self._controller: LessonController | None = None

    def _make_controller(self, dock: QDockWidget) -> None:
        from .panel import LessonController

        self._controller = LessonController(self.main_window, dock)

    @property
    def controller(self) -> LessonController:
        """The window's lessons: opening one, its key hooks, the panel (made now if they were not yet)."""
        self.contents()
        assert self._controller is not None
        return self._controller


def attach_lessons(window: Any) -> LessonDock:
    """The Lesson dock, File ▸ Lessons (before Quit) and View ▸ Lesson for `window` (a MainWindow)."""
    dock = LessonDock(window)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.hide()  # shown when a lesson opens
    menu = QMenu("&Lessons", window)
    menu.setObjectName("lessonsMenu")
    file_menu = window.file_menu
    quit_action = next((a for a in file_menu.actions() if a.text() == "&Quit"), None)
    file_menu.insertMenu(quit_action, menu)
    filled = False

    def fill() -> None:  # when first opened: listing them reads every lesson's front matter
        nonlocal filled
        if filled:
            return
        filled = True
        from ...debugger.lessons import builtin_lessons

        for name, title in builtin_lessons().items():
            act = menu.addAction(title)
            act.triggered.connect(lambda _c=False, n=name: dock.controller.open(n))
        menu.addSeparator()
        menu.addAction("Open lesson file…").triggered.connect(lambda: _open_file(window, dock))

    menu.aboutToShow.connect(fill)
    window.view_menu.addAction(dock.toggleViewAction())
    return dock


def _open_file(window: Any, dock: LessonDock) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open lesson", "", "Lessons (*.md)")
    if path:
        dock.controller.open(path)


def run_lesson(lesson: Lesson, session: Session, projector: bool = False, size: tuple[int, int] | None = None,
               screenshot: str | Path | None = None, presses: int = 0) -> int:
    """`propscope lesson`: the app on a lesson; with `screenshot`, a PNG after `presses` presses of Next."""
    from ..app import application, collect_garbage_once_shown, settle
    from ..main_window import MainWindow

    app = application()
    window = MainWindow(session, settings=None if screenshot else QSettings())
    controller = window.lessons
    if size is not None:
        window.resize(*size)
    window.show()
    app.processEvents()
    if projector:
        window.set_projector(True, full_screen=screenshot is None and size is None)
    if not controller.start(lesson, session):
        print(f"propscope: error: {window.last_error}", file=sys.stderr)
        window.close()
        return 2
    for _ in range(presses):
        controller.next()
    app.processEvents()
    if screenshot is None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        collect_garbage_once_shown()
        code = int(app.exec())
        if window.settings is not None:  # the console script exits without destructors (cli.entry): write now
            window.settings.sync()
        return code
    settle(app)  # as `propscope open --screenshot`: what the event loop would have done before painting
    ok = window.grab().save(str(screenshot), "PNG", 80)
    window.close()
    if not ok:
        print(f"propscope: error: could not write {screenshot}", file=sys.stderr)
        return 2
    print(f"wrote {screenshot}")
    return 0
