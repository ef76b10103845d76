"""Dock title bars that follow the application font.

QDockWidget draws its own title in a font it caches when created, so projector mode would leave
the titles small; these title bars are ordinary widgets and scale with everything else.
"""

from __future__ import annotations

from PySide6.QtCore import QRect
from PySide6.QtWidgets import QDockWidget, QHBoxLayout, QLabel, QStyle, QToolButton, QWidget

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


def default_window_size(available: QRect | None, preferred: tuple[int, int] = PREFERRED_WINDOW) -> tuple[int, int]:
    """The window's first size: `preferred`, made to fit the screen's free area (a 1366×768 laptop's
    taskbar and title bar included); the full preferred size where there is no real screen (offscreen)."""
    if available is None or available.isEmpty():
        return preferred
    return min(preferred[0], available.width()), min(preferred[1], available.height() - 30)  # 30: title bar
