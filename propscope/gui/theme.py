"""Themes: light and dark follow the system; projector mode is one more theme plus a scale factor.

Every view reads its colours, pen widths and font sizes from the current `Theme` and redraws on
`ThemeManager.changed`, so projector mode is one switch rather than a second set of widgets.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field, replace
from typing import ClassVar

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontInfo, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

PROJECTOR_SCALE = 1.6


@dataclass(frozen=True)
class Theme:
    name: str
    dark: bool
    scale: float
    colors: dict[str, str] = field(default_factory=dict)
    line: float = 1.3  # base pen width in pixels, before scaling

    def color(self, key: str) -> QColor:
        return QColor(self.colors[key])

    def pen_width(self, factor: float = 1.0) -> float:
        return self.line * factor * (1.5 if self.name == "projector" else 1.0) * self.scale

    def px(self, size: float) -> int:
        """A pixel size scaled for this theme (fonts, node boxes, margins)."""
        return max(1, round(size * self.scale))

    def font(self, size: float, bold: bool = False) -> QFont:
        f = QFont(QApplication.font())
        f.setPixelSize(self.px(size))
        f.setBold(bold)
        return f

    @property
    def projector(self) -> bool:
        return self.name == "projector"


LIGHT = Theme("light", False, 1.0, {
    "background": "#f7f8fa", "text": "#1f2328", "header_text": "#ffffff",
    "muted": "#57606a", "edge": "#8c959f", "chip": "#ffffff",
    "forward": "#1f6feb", "gradient": "#d9480f", "highlight": "#f0a800", "selection": "#0969da",
    "breakpoint": "#e5383b",
    "input.fill": "#e3f4f1", "input.accent": "#00796b",
    "parameter.fill": "#f3e8fa", "parameter.accent": "#7b3fa0",
    "math.fill": "#ffffff", "math.accent": "#1f5fad",
    "activation.fill": "#ffffff", "activation.accent": "#2e7d32",
    "shape.fill": "#ffffff", "shape.accent": "#6e7781",
    "loss.fill": "#fdecec", "loss.accent": "#c62828",
    "module.fill": "#eef2f8", "module.accent": "#44546a",
    "unsupported.fill": "#fff4e5", "unsupported.accent": "#b35c00",
})

DARK = Theme("dark", True, 1.0, {
    "background": "#1e1f22", "text": "#e6e6e6", "header_text": "#15171a",
    "muted": "#a0a8b0", "edge": "#6b737c", "chip": "#2b2d31",
    "forward": "#58a6ff", "gradient": "#ff9e4a", "highlight": "#ffd43b", "selection": "#79c0ff",
    "breakpoint": "#ff5c5c",
    "input.fill": "#173330", "input.accent": "#4db6ac",
    "parameter.fill": "#2d2238", "parameter.accent": "#c792ea",
    "math.fill": "#25282e", "math.accent": "#6ca8ff",
    "activation.fill": "#25282e", "activation.accent": "#7bc67e",
    "shape.fill": "#25282e", "shape.accent": "#a0a8b0",
    "loss.fill": "#3a1e1e", "loss.accent": "#ff6b6b",
    "module.fill": "#262b33", "module.accent": "#9fb3c8",
    "unsupported.fill": "#3a2a14", "unsupported.accent": "#ffa94d",
})

# High contrast for a washed-out projector: white ground, black text, saturated dark accents.
PROJECTOR = Theme("projector", False, PROJECTOR_SCALE, {
    "background": "#ffffff", "text": "#000000", "header_text": "#ffffff",
    "muted": "#1a1a1a", "edge": "#3a3a3a", "chip": "#ffffff",
    "forward": "#0047cc", "gradient": "#d03a00", "highlight": "#ffa000", "selection": "#0047cc",
    "breakpoint": "#e00000",
    "input.fill": "#c8ece6", "input.accent": "#00574b",
    "parameter.fill": "#ead5f5", "parameter.accent": "#5a1580",
    "math.fill": "#ffffff", "math.accent": "#0d3c8c",
    "activation.fill": "#ffffff", "activation.accent": "#15561a",
    "shape.fill": "#ffffff", "shape.accent": "#333333",
    "loss.fill": "#ffd9d9", "loss.accent": "#a00000",
    "module.fill": "#e4eaf3", "module.accent": "#1b2a40",
    "unsupported.fill": "#ffe8cc", "unsupported.accent": "#8a3f00",
}, line=1.6)


def node_kind(op_name: str, category: str) -> str:
    """Which look a node gets: input, parameter (and constant), loss, unsupported, or its op category."""
    if op_name == "input":
        return "input"
    if op_name in ("parameter", "constant"):
        return "parameter"
    return category if category in ("math", "activation", "shape", "loss", "unsupported") else "math"


def _projector_palette() -> QPalette:
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#ffffff", QPalette.ColorRole.WindowText: "#000000",
        QPalette.ColorRole.Base: "#ffffff", QPalette.ColorRole.AlternateBase: "#f0f0f0",
        QPalette.ColorRole.Text: "#000000", QPalette.ColorRole.Button: "#eeeeee",
        QPalette.ColorRole.ButtonText: "#000000", QPalette.ColorRole.Highlight: "#0047cc",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#ffffe0",
        QPalette.ColorRole.ToolTipText: "#000000", QPalette.ColorRole.PlaceholderText: "#333333",
        QPalette.ColorRole.Mid: "#555555", QPalette.ColorRole.Dark: "#333333",
    }
    for role, color in roles.items():
        p.setColor(role, QColor(color))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#555555"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#555555"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor("#555555"))
    return p


class ThemeManager(QObject):
    """Owns the current theme; projector mode scales the application font and swaps the palette."""

    changed = Signal()
    _live: ClassVar[weakref.WeakSet[ThemeManager]] = weakref.WeakSet()  # the managers not yet restored

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        app = QApplication.instance()
        assert isinstance(app, QApplication), "a QApplication must exist before the ThemeManager"
        self._app = app
        # The application's own font and palette: another window may be in projector mode, its type on the app now
        # (a second window, a lesson beside the main one); its manager knows what the app had before.
        other = next((m for m in list(ThemeManager._live) if m._app is app), None)
        self._base_font = QFont(other._base_font if other else app.font())
        self._base_palette = QPalette(other._base_palette if other else app.palette())
        ThemeManager._live.add(self)
        self._projector = False
        self._projector_theme = PROJECTOR
        hints = QGuiApplication.styleHints()
        hints.colorSchemeChanged.connect(self._system_changed)
        self._following_system = True

    @property
    def projector(self) -> bool:
        return self._projector

    @property
    def theme(self) -> Theme:
        if self._projector:
            return self._projector_theme
        return DARK if self._system_dark() else LIGHT

    def _system_dark(self) -> bool:
        scheme = QGuiApplication.styleHints().colorScheme()
        if scheme == Qt.ColorScheme.Dark:
            return True
        if scheme == Qt.ColorScheme.Light:
            return False
        return self._base_palette.color(QPalette.ColorRole.Window).lightness() < 128

    @property
    def base_text_px(self) -> int:
        """The application font's size in pixels outside projector mode."""
        return QFontInfo(self._base_font).pixelSize()

    def set_projector(self, on: bool, scale: float = PROJECTOR_SCALE) -> None:
        """Projector mode on or off; `scale` sizes it for the room (the window's resolution)."""
        if on == self._projector and (not on or scale == self._projector_theme.scale):
            return
        if on and self not in ThemeManager._live:  # restored: a closed window's timer (a resize's rescale) is too late
            return
        self._projector = on
        if on:
            self._projector_theme = replace(PROJECTOR, scale=scale)
            self._apply_projector()
        else:
            # another window still in projector mode keeps the application's type (the font is the app's, not a
            # window's); the last one out gives the app its own
            other = next((m for m in list(ThemeManager._live) if m is not self and m._app is self._app
                          and m._projector), None)
            if other is not None:
                other._apply_projector()
            else:
                self._app.setFont(self._base_font)
                self._app.setPalette(self._base_palette)
        self.changed.emit()

    def _apply_projector(self) -> None:
        font = QFont(self._base_font)
        size = self._base_font.pointSizeF()
        if size > 0:
            font.setPointSizeF(size * self._projector_theme.scale)
        else:
            font.setPixelSize(round(self._base_font.pixelSize() * self._projector_theme.scale))
        self._app.setFont(font)
        self._app.setPalette(_projector_palette())

    def restore(self) -> None:
        """Leave the application as it was found (the window closes; tests share one QApplication)."""
        self.set_projector(False)
        ThemeManager._live.discard(self)
        if not self._following_system:  # closed twice (the user, then the app quitting): already let go
            return
        self._following_system = False
        with contextlib.suppress(RuntimeError, TypeError):
            QGuiApplication.styleHints().colorSchemeChanged.disconnect(self._system_changed)

    def _system_changed(self, *args: object) -> None:
        if not self._projector:
            self._base_palette = QPalette(self._app.palette())
            self.changed.emit()
