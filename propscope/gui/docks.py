"""Dock title bars that follow the application font, docks whose contents are made when first shown, contents that
scroll instead of making the window taller, and tab groups with one tab bar.

QDockWidget draws its own title in a font it caches when created, so projector mode would leave
the titles small; these title bars are ordinary widgets and scale with everything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QEvent, QObject, QRect, QSize, Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QScrollArea,
    QStyle,
    QToolButton,
    QWidget,
)

from .guard import guarded, guarded_answer

PREFERRED_WINDOW = (1400, 900)
LEAST_LINES = 4  # a scrolling dock's least height, in lines of the application's type


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


class ScrollBody(QWidget):
    """A dock's contents inside a `DockScroll`. Asked for its height at a width (the scroll area sizes it by that), it
    answers the least its layout can take there; Qt's answer is the preferred height, which made a dock scroll where
    its rows fit by shrinking. `resized` tells the owner its rows have a new size to share."""

    resized = Signal()

    @guarded_answer(-1)
    def heightForWidth(self, width: int) -> int:
        lay = self.layout()
        return -1 if lay is None else lay.minimumHeightForWidth(width)

    @guarded
    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.resized.emit()


class DockScroll(QScrollArea):
    """A dock's contents scrolled up and down where the dock is shorter than their least height, so that the dock asks
    the window for `LEAST_LINES` lines, not for the sum of its rows' minimums: beside the canvas in projector type at
    1024×768, a dock's rows added up made the window taller than the screen. Where the dock has the room, the contents
    fill it as before. It asks for the contents' least width (never a sideways scroll bar)."""

    def __init__(self, body: QWidget, least_lines: int = LEAST_LINES) -> None:
        super().__init__()
        self.least_lines = least_lines
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidgetResizable(True)  # as tall as the dock where they fit, as tall as they need where not
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(body)

    @guarded_answer(False)
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the contents' least width changed (a longer title): the dock's follows it
        return super().eventFilter(watched, event)

    @guarded_answer(QSize())
    def minimumSizeHint(self) -> QSize:
        body = self.widget()
        width = 0 if body is None else body.minimumSizeHint().width()
        bar = self.verticalScrollBar().sizeHint().width()
        return QSize(width + bar + 2 * self.frameWidth(), self.least_lines * QFontMetrics(self.font()).lineSpacing())

    @guarded_answer(QSize())
    def sizeHint(self) -> QSize:
        body = self.widget()
        return self.minimumSizeHint() if body is None else body.sizeHint()  # all of them, no scroll bar


def tabify(window: QMainWindow, first: QDockWidget, second: QDockWidget) -> None:
    """`second` as a tab beside `first` (`QMainWindow.tabifyDockWidget`), the group with one tab bar.

    Qt (6.11) lays the window out before it makes a new group's tab bar (where it has made one before). Where the
    layout has changed since it was last laid out, and moving `second` out of its place changes it, that layout finds
    the group without a bar and makes it one; `tabifyDockWidget` then makes it another. The first is left in the window,
    painted where it was put with the group's tabs ("Chain rule | Training" over the chain rule's title and behind the
    Diff dock's controls) until an event loop deletes it, and a later layout may show it again. So `second` leaves its
    place first, the window is laid out, and the group forms in a layout with nothing left to do; `second` is shown
    again if it was."""
    if second in window.tabifiedDockWidgets(first):
        return
    shown = not second.isHidden()
    if window.dockWidgetArea(second) != Qt.DockWidgetArea.NoDockWidgetArea:
        window.removeDockWidget(second)  # (which hides it)
    layout = window.layout()
    if layout is not None:
        layout.activate()
    window.tabifyDockWidget(first, second)
    if shown:
        second.show()


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
