"""Dock title bars that follow the application font, and docks whose contents are made when first shown.

QDockWidget draws its own title in a font it caches when created, so projector mode would leave
the titles small; these title bars are ordinary widgets and scale with everything else.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QRect
from PySide6.QtWidgets import QDockWidget, QHBoxLayout, QLabel, QStyle, QToolButton, QWidget

from .guard import guarded

PREFERRED_WINDOW = (1400, 900)


class DockTitle(QWidget):
    def __init__(self, dock: QDockWidget) -> None:
        super().__init__(dock)
        self.dock = dock
        self.label = QLabel(dock.windowTitle())
        font = self.label.font()
        font.setBold(True)
        self.label.setFont(font)
        float_button = QToolButton()
        float_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_TitleBarNormalButton))
        float_button.setToolTip("Float or dock this panel")
        float_button.setAutoRaise(True)
        float_button.clicked.connect(lambda: dock.setFloating(not dock.isFloating()))
        close_button = QToolButton()
        close_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_TitleBarCloseButton))
        close_button.setToolTip("Hide this panel (View menu shows it again)")
        close_button.setAutoRaise(True)
        close_button.clicked.connect(dock.close)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 2, 2, 2)
        lay.setSpacing(2)
        lay.addWidget(self.label, 1)
        lay.addWidget(float_button)
        lay.addWidget(close_button)


def make_dock(title: str, name: str, widget: QWidget, parent: QWidget) -> QDockWidget:
    dock = QDockWidget(title, parent)
    dock.setObjectName(name)
    dock.setWidget(widget)
    dock.setTitleBarWidget(DockTitle(dock))
    return dock


class LazyDock(QDockWidget):
    """A dock that starts hidden and empty: `make(dock)` gives it its widget the first time it is shown (its View
    menu entry, a shortcut, a restored layout, `show()`) or asked for (`contents()`). A panel nobody opens costs
    neither its widgets nor the modules that make them at start-up. Its place in the window's layout, its
    `toggleViewAction()` and its name in a saved layout are there from the start, as for any dock."""

    def __init__(self, title: str, name: str, make: Callable[[QDockWidget], object], parent: QWidget) -> None:
        super().__init__(title, parent)
        self.setObjectName(name)
        self._make: Callable[[QDockWidget], object] | None = make

    @property
    def built(self) -> bool:
        return self._make is None

    def contents(self) -> QWidget:
        """The dock's widget, made now if it was not yet."""
        make, self._make = self._make, None
        if make is not None:
            try:
                self.setTitleBarWidget(DockTitle(self))
                make(self)
            except BaseException:
                self._make = make  # the next show tries again
                raise
        widget = self.widget()
        assert widget is not None, f"{self.objectName()}: its maker set no widget"
        return widget

    @guarded
    def setVisible(self, visible: bool) -> None:
        if visible:
            self.contents()  # before Qt lays the dock out, so it is sized by what it shows
        super().setVisible(visible)


def default_window_size(available: QRect | None, preferred: tuple[int, int] = PREFERRED_WINDOW) -> tuple[int, int]:
    """The window's first size: `preferred`, made to fit the screen's free area (a 1366×768 laptop's
    taskbar and title bar included); the full preferred size where there is no real screen (offscreen)."""
    if available is None or available.isEmpty():
        return preferred
    return min(preferred[0], available.width()), min(preferred[1], available.height() - 30)  # 30: title bar
