"""View ▸ Colour nodes by: the graph coloured by one number per node, to see where gradients vanish, explode or go NaN.

The numbers come from `debugger.node_numbers.NodeNumbers` (no Qt: the model emits `changed`, this view follows).
Here: the colours (a viridis ramp, colour-blind safe, trimmed at the end that would vanish into the theme's
background; NaN and inf in the magenta of `colormap.NONFINITE`), the legend over the canvas's top right corner, the
menu with its key (C cycles the modes; `propscope open --colour-by` for screenshots). The canvas paints:
nodes (`items.NodeItem.set_tint`), folded boxes (their most alarming member, `GraphScene.recolour`), the overview
and the minimap (`overview.OverviewItem.set_colours`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt
from PySide6.QtGui import QAction, QActionGroup, QColor, QFontMetricsF, QKeySequence, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QWidget

from ...debugger.node_numbers import (
    BAD,
    CARRIED,
    DISAGREE,
    GRAD,
    LEVELS,
    MODES,
    NEUTRAL,
    NONFINITE,
    ORIGIN,
    VALUE,
    NodeNumbers,
)
from ..colormap import NONFINITE as NONFINITE_RGB
from ..guard import guarded
from ..theme import Theme

CYCLE_KEY = "C"
LABELS = {None: "&None", GRAD: "&Gradient size", VALUE: "&Value size", NONFINITE: "&Non-finite (NaN, inf)",
          DISAGREE: "&Backends disagree"}
TIPS = {
    None: "Nodes coloured by their kind",
    GRAD: "The RMS of ∂L/∂(the node's output) once its backward step has run, log scale: where gradients vanish or "
          "explode",
    VALUE: "The RMS of the node's output once its forward step has run, log scale",
    NONFINITE: "NaN or inf in the node's value or gradient: where it starts in magenta, where it was carried on "
               "paler; the rest grey",
    DISAGREE: "The relative difference Debug ▸ Compare backends (Ctrl+B) found at each node, log scale",
}
TITLES = {GRAD: "Gradient size: RMS of ∂L/∂output", VALUE: "Value size: RMS of the output",
          NONFINITE: "Non-finite: NaN or inf in value or ∇", DISAGREE: "Backends disagree: relative difference"}
SHORT_TITLES = {GRAD: "RMS of ∂L/∂out", VALUE: "RMS of the output", NONFINITE: "NaN or inf",
                DISAGREE: "backends' difference"}  # the one-line legend's, over a short canvas
COMPACT_ABOVE = 0.22  # the legend goes on one line where its full form would take more of the canvas's height
EMPTY = {GRAD: "no gradient yet: step into the backward pass", VALUE: "no value yet: take a step",
         DISAGREE: "no comparison yet: Debug ▸ Compare backends (Ctrl+B)"}
# viridis at nine stops (matplotlib's, public domain): dark purple, blue, green, yellow
VIRIDIS = np.array([[68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                    [53, 183, 121], [110, 206, 88], [253, 231, 37]], dtype=np.float64)
# the part of the ramp used: on a dark ground its darkest purple is lost, on a light one its palest yellow
RAMP_SPAN = {True: (0.12, 1.0), False: (0.0, 0.96)}
NEUTRAL_COLOR = {True: "#8b939c", False: "#a7afb8"}  # finite, in the non-finite mode: plain grey on either ground


def ramp_rgb(t: np.ndarray, dark: bool) -> np.ndarray:
    """(n, 3) RGB in 0..255 of positions `t` (0..1) on the ramp for a dark or light ground."""
    lo, hi = RAMP_SPAN[dark]
    stops = np.linspace(0.0, 1.0, len(VIRIDIS))
    u = lo + (hi - lo) * np.clip(t, 0.0, 1.0)
    return np.stack([np.interp(u, stops, VIRIDIS[:, c]) for c in range(3)], axis=1)


class Palette:
    """A theme's colour for each code of `NodeNumbers.codes` (None: no number, the node drawn pale)."""

    def __init__(self, theme: Theme) -> None:
        self.dark = theme.dark
        rgb = ramp_rgb(np.linspace(0.0, 1.0, LEVELS), theme.dark).round().astype(int).tolist()
        self.colors = [QColor(r, g, b) for r, g, b in rgb]
        self.colors.append(QColor(*NONFINITE_RGB))  # BAD
        self.colors.append(QColor(NEUTRAL_COLOR[theme.dark]))  # NEUTRAL
        self.colors.append(QColor(*NONFINITE_RGB))  # ORIGIN: where it starts, in the full colour
        grey = QColor(NEUTRAL_COLOR[theme.dark])
        # CARRIED: half way to the grey of the finite nodes, so the origin stands out from what it spread to
        self.colors.append(QColor(*((c + g) // 2 for c, g in zip(NONFINITE_RGB, (grey.red(), grey.green(), grey.blue()),
                                                               strict=True))))
        self.bad, self.neutral = self.colors[BAD], self.colors[NEUTRAL]
        self.origin, self.carried = self.colors[ORIGIN], self.colors[CARRIED]

    def color(self, code: int) -> QColor | None:
        return self.colors[code] if code >= 0 else None


_PALETTES: dict[tuple[str, bool], Palette] = {}


def palette_for(theme: Theme) -> Palette:
    """The theme's palette, made once (a legend repaints with each step that moves the numbers)."""
    key = (theme.name, theme.dark)
    if key not in _PALETTES:
        _PALETTES[key] = Palette(theme)
    return _PALETTES[key]


def paint_ramp(p: QPainter, bar: QRectF, palette: Palette, t: Theme) -> None:
    """The colour ramp, low to high from left to right, in `bar`, framed."""
    step = bar.width() / LEVELS
    p.setPen(Qt.PenStyle.NoPen)
    for k in range(LEVELS):
        p.setBrush(palette.colors[k])
        p.drawRect(QRectF(bar.left() + k * step, bar.top(), step + 0.6, bar.height()))
    p.setPen(QPen(t.color("muted"), 1))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRect(bar)


def end_text(x: float) -> str:
    return f"{x:.2g}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


class ColourLegend(QWidget):
    """What the colours mean, over the canvas's top right corner: the mode, the ramp with its two end values, and
    the swatches for NaN/inf and for nodes without a number yet. Sized by the theme's fonts, so it reads in
    projector mode."""

    def __init__(self, canvas: Any) -> None:
        super().__init__(canvas)  # the canvas, not its viewport: a scroll does not carry it away
        self.setObjectName("colourLegend")
        self.canvas = canvas
        self.numbers: NodeNumbers | None = None
        self.ends: tuple[float, float] | None = None  # the ramp's (low, high) as shown
        self.end_texts: tuple[str, str] = ("", "")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.hide()

    def show_numbers(self, numbers: NodeNumbers | None, again: bool = False) -> None:
        """Show what `numbers` (None: nothing) are coloured by; repainted only when that changed (or `again`, a new
        theme)."""
        was = (self.numbers, None if self.numbers is None else self.numbers.mode, self.ends, self.end_texts)
        self.numbers = numbers
        mode = None if numbers is None else numbers.mode
        if mode is None or numbers is None:
            if self.isVisible():
                self.hide()
                self._band_for_crumbs(0)
            return
        scale = numbers.scale()
        self.ends = None if scale is None else (scale.low, scale.high)
        if scale is not None:
            present = numbers.numbers()[0]
            below = bool(np.any(present[np.isfinite(present)] < scale.low))  # zeros (or under the floor)
            self.end_texts = (("≤ " if below else "") + end_text(scale.low), end_text(scale.high))
        else:
            self.end_texts = ("", "")
        if not again and self.isVisible() and was == (numbers, mode, self.ends, self.end_texts):
            return
        self.resize(*self._size())
        self.place()
        self.show()
        self.raise_()
        self.update()

    def _theme(self) -> Theme:
        theme: Theme = self.canvas.themes.theme
        return theme

    def _lines(self) -> list[str]:
        mode = self.numbers.mode if self.numbers is not None else None
        if mode is None:
            return []
        lines = [TITLES[mode]]
        if mode != NONFINITE and self.ends is None:
            lines.append(EMPTY[mode])
        return lines

    def _swatches(self, palette: Palette, t: Theme) -> list[tuple[QColor, str]]:
        """The full legend's row of swatches: the NaN/inf colours, and the finite and not-yet ones."""
        if self.numbers is not None and self.numbers.mode == NONFINITE:
            swatches = [(palette.origin, "starts here"), (palette.carried, "carried on"), (palette.neutral, "finite")]
        else:
            swatches = [(palette.bad, "NaN or inf")]
        pale = t.color("math.accent")
        pale.setAlphaF(0.35)
        return [*swatches, (pale, "not yet")]

    def _swatches_width(self, t: Theme) -> float:
        small_fm = QFontMetricsF(t.font(10.5))
        box = small_fm.ascent() * 0.9
        return sum(box + t.px(4) + small_fm.horizontalAdvance(text) + t.px(12)
                   for _, text in self._swatches(palette_for(t), t)) - t.px(12)

    def _full_size(self) -> tuple[int, int]:
        t = self._theme()
        title_fm, small_fm = QFontMetricsF(t.font(11, bold=True)), QFontMetricsF(t.font(10.5))
        pad = t.px(8)
        width = max([title_fm.horizontalAdvance(line) for line in self._lines()[:1]]
                    + [small_fm.horizontalAdvance(line) for line in self._lines()[1:]] + [t.px(220)]
                    + [self._swatches_width(t)])
        height = pad * 2 + title_fm.height() + small_fm.height() * (len(self._lines()) - 1)
        if self.ends is not None:
            height += t.px(14) + small_fm.height() + t.px(6)  # the bar and its end values
        height += t.px(4) + small_fm.height()  # the swatches
        return math.ceil(width + 2 * pad), math.ceil(height)

    def compact(self) -> bool:
        """Whether the legend is drawn on one line: where the canvas is short (projector mode at 1024×768) the full
        legend would hide a third of the graph."""
        return self._full_size()[1] > COMPACT_ABOVE * self.canvas.viewport().height()

    def _row(self) -> list[tuple[str, Any]]:
        """The one-line legend's pieces, left to right: ("text", str), ("bar", width) and ("swatch", (color, text))."""
        t = self._theme()
        mode = self.numbers.mode if self.numbers is not None else None
        row: list[tuple[str, Any]] = [("title", SHORT_TITLES.get(mode or "", ""))]
        if mode != NONFINITE:
            if self.ends is None:
                row.append(("text", "none yet"))
            else:
                row += [("text", self.end_texts[0]), ("bar", t.px(110)), ("text", self.end_texts[1] + " (log)")]
        palette = palette_for(t)
        if mode == NONFINITE:
            row += [("swatch", (palette.origin, "starts here")), ("swatch", (palette.carried, "carried on"))]
        else:
            row.append(("swatch", (palette.bad, "NaN/inf")))
        return row

    def _row_width(self, row: list[tuple[str, Any]]) -> float:
        t = self._theme()
        title_fm, small_fm = QFontMetricsF(t.font(11, bold=True)), QFontMetricsF(t.font(10.5))
        gap, width = t.px(6), 0.0
        for kind, what in row:
            if kind == "title":
                width += title_fm.horizontalAdvance(what)
            elif kind == "text":
                width += small_fm.horizontalAdvance(what)
            elif kind == "bar":
                width += what
            else:
                width += small_fm.ascent() * 0.9 + t.px(4) + small_fm.horizontalAdvance(what[1])
            width += gap
        return width - gap

    def _size(self) -> tuple[int, int]:
        if not self.compact():
            return self._full_size()
        t = self._theme()
        pad = t.px(6)
        height = max(QFontMetricsF(t.font(11, bold=True)).height(), t.px(12))
        return math.ceil(self._row_width(self._row()) + 2 * pad), math.ceil(height + 2 * pad)

    def _paint_row(self, p: QPainter, t: Theme) -> None:
        """The one-line legend: the short title, the low end, the ramp, the high end, the NaN/inf swatch."""
        pad, gap = t.px(6), t.px(6)
        title_font, small_font = t.font(11, bold=True), t.font(10.5)
        title_fm, small_fm = QFontMetricsF(title_font), QFontMetricsF(small_font)
        inner = QRectF(self.rect()).adjusted(pad, pad, -pad, -pad)
        middle = inner.center().y()
        x = inner.left()
        palette = palette_for(t)
        for kind, what in self._row():
            if kind == "title":
                p.setFont(title_font)
                p.setPen(t.color("text"))
                p.drawText(QPointF(x, middle + (title_fm.ascent() - title_fm.descent()) / 2), what)
                x += title_fm.horizontalAdvance(what)
            elif kind == "text":
                p.setFont(small_font)
                p.setPen(t.color("text"))
                p.drawText(QPointF(x, middle + (small_fm.ascent() - small_fm.descent()) / 2), what)
                x += small_fm.horizontalAdvance(what)
            elif kind == "bar":
                paint_ramp(p, QRectF(x, middle - t.px(6), what, t.px(12)), palette, t)
                x += what
            else:
                color, text = what
                box = small_fm.ascent() * 0.9
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(color)
                p.drawRoundedRect(QRectF(x, middle - box / 2, box, box), box / 4, box / 4)
                x += box + t.px(4)
                p.setFont(small_font)
                p.setPen(t.color("text"))
                p.drawText(QPointF(x, middle + (small_fm.ascent() - small_fm.descent()) / 2), text)
                x += small_fm.horizontalAdvance(text)
            x += gap

    def _band_for_crumbs(self, width: int) -> None:
        """Keep `width` pixels at the right of the breadcrumbs' band for the legend (0: none); the crumbs are named
        shorter where they would reach it."""
        # found by name: breadcrumbs.py imports the view, which imports this module
        crumbs = self.canvas.findChild(QWidget, "breadcrumbs", Qt.FindChildOption.FindDirectChildrenOnly)
        reserve = getattr(crumbs, "reserve_right", None)
        if reserve is not None:
            reserve(width, holder="legend")

    def place(self) -> None:
        """Top right of the canvas's view of the graph, below the search box when that floats there; the one-line
        legend goes in the breadcrumbs' band above the graph where it fits beside them, so it covers nothing."""
        t = self._theme()
        margin = t.px(8)
        vp = self.canvas.viewport().geometry()
        x, y = vp.right() + 1 - self.width() - margin, vp.top() + margin
        search = self.canvas.findChild(QWidget, "searchBar", Qt.FindChildOption.FindDirectChildrenOnly)
        searching = search is not None and search.isVisible()
        band = vp.top()
        # a line of text and its padding: where the band is a little lower (projector mode's larger font), the
        # legend takes the band's height, its padding giving the difference
        in_band = self.compact() and not searching and band >= self._size()[1] - 2 * t.px(6) + t.px(4)
        self._band_for_crumbs(self.width() + 2 * margin if in_band else 0)
        if in_band:
            height = min(self._size()[1], band)
            if self.height() != height:
                self.resize(self.width(), height)
            self.move(max(0, x), (band - height) // 2)
            return
        if self.height() != self._size()[1]:
            self.resize(*self._size())
        if searching and search.geometry().bottom() >= y:
            y = search.geometry().bottom() + margin
        self.move(max(0, x), y)

    @guarded
    def paintEvent(self, event: QPaintEvent) -> None:
        numbers = self.numbers
        if numbers is None or numbers.mode is None:
            return
        t = self._theme()
        palette = palette_for(t)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        pad = t.px(8)
        back = t.color("background")
        back.setAlphaF(0.93)
        p.setPen(QPen(t.color("muted"), max(1.0, t.pen_width(0.8))))
        p.setBrush(back)
        p.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), t.px(6), t.px(6))
        if self.compact():
            self._paint_row(p, t)
            p.end()
            return
        title_font, small_font = t.font(11, bold=True), t.font(10.5)
        title_fm, small_fm = QFontMetricsF(title_font), QFontMetricsF(small_font)
        inner = QRectF(self.rect()).adjusted(pad, pad, -pad, -pad)
        y = inner.top()
        lines = self._lines()
        p.setPen(t.color("text"))
        p.setFont(title_font)
        p.drawText(QRectF(inner.left(), y, inner.width(), title_fm.height()), Qt.AlignmentFlag.AlignLeft, lines[0])
        y += title_fm.height()
        p.setFont(small_font)
        p.setPen(t.color("muted"))
        for line in lines[1:]:
            p.drawText(QRectF(inner.left(), y, inner.width(), small_fm.height()), Qt.AlignmentFlag.AlignLeft, line)
            y += small_fm.height()
        if self.ends is not None:
            y += t.px(4)
            bar = QRectF(inner.left(), y, inner.width(), t.px(12))
            paint_ramp(p, bar, palette, t)
            y = bar.bottom() + t.px(2)
            p.setPen(t.color("text"))
            row = QRectF(inner.left(), y, inner.width(), small_fm.height())
            low, high = self.end_texts
            p.drawText(row, Qt.AlignmentFlag.AlignLeft, low)
            p.drawText(row, Qt.AlignmentFlag.AlignRight, high)
            p.setPen(t.color("muted"))
            p.drawText(row, Qt.AlignmentFlag.AlignHCenter, "log scale")
            y += small_fm.height()
        y += t.px(4)
        swatches = self._swatches(palette, t)
        x = inner.left()
        box = small_fm.ascent() * 0.9
        for color, text in swatches:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(color)
            p.drawRoundedRect(QRectF(x, y + (small_fm.height() - box) / 2, box, box), box / 4, box / 4)
            x += box + t.px(4)
            p.setPen(t.color("text"))
            p.drawText(QPointF(x, y + small_fm.ascent()), text)
            x += small_fm.horizontalAdvance(text) + t.px(12)
        p.end()


class ColourBy(QObject):
    """The mode the user chose, the numbers of the window's session in it, and what shows them."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.canvas = window.canvas
        bridge = window.bridge
        self.numbers = NodeNumbers(bridge.session)
        self.numbers.changed.connect(self._changed)
        self.legend = ColourLegend(self.canvas)
        self.group = QActionGroup(self)
        self.actions: dict[str | None, QAction] = {}
        for mode in (None, *MODES):
            act = QAction(LABELS[mode], self.group, checkable=True)
            act.setData(mode)
            act.setObjectName(f"colourBy_{mode or 'none'}")
            act.setStatusTip(TIPS[mode])
            act.setToolTip(TIPS[mode])
            self.actions[mode] = act
        self.actions[None].setChecked(True)
        self.group.triggered.connect(lambda act: self.set_mode(act.data()))
        self.cycle = QAction("Next node colouring", window)
        self.cycle.setObjectName("colourByNext")
        self.cycle.setShortcut(QKeySequence(CYCLE_KEY))
        self.cycle.setStatusTip("Colour nodes by the next number: none, gradient, value, non-finite, backends")
        self.cycle.triggered.connect(self.next_mode)
        window.addAction(self.cycle)  # the key works wherever the focus is in the window
        bridge.cursorMoved.connect(self._follow)
        bridge.traceChanged.connect(self._follow)
        bridge.sessionChanged.connect(self._session_changed)
        self.canvas.viewChanged.connect(self._place)
        window.themes.changed.connect(lambda: self.legend.show_numbers(self.numbers, again=True))
        window.diff_dock.visibilityChanged.connect(self._watch_comparisons)
        self._watched: object = None

    @property
    def mode(self) -> str | None:
        return self.numbers.mode

    def menu_into(self, menu: Any) -> None:
        sub = menu.addMenu("Colour nodes &by")
        sub.setObjectName("colourByMenu")
        sub.setToolTipsVisible(True)
        for act in self.actions.values():
            sub.addAction(act)
        sub.addSeparator()
        sub.addAction(self.cycle)

    def set_mode(self, mode: str | None) -> None:
        """Colour by `mode` (None: by kind, as without this)."""
        self.actions[mode].setChecked(True)
        if mode == DISAGREE:
            self._read_comparison()
        self.numbers.set_mode(mode)  # emits `changed`
        self.canvas.set_colouring(self.numbers if mode is not None else None)
        if mode is not None:
            self.window.message(f"Colouring nodes by {LABELS[mode].replace('&', '').lower()}")
        self._minimap_again()

    def next_mode(self) -> None:
        order = [None, *MODES]
        if self.actions[DISAGREE].isEnabled() is False:
            order.remove(DISAGREE)
        self.set_mode(order[(order.index(self.mode) + 1) % len(order)])

    # -- following --------------------------------------------------------------------------------
    def _follow(self, *_args: object) -> None:
        if self.numbers.mode is not None:
            self.numbers.follow()

    def _changed(self) -> None:
        if self.numbers.mode is None:
            self.legend.show_numbers(None)
            return
        self.canvas.recolour()
        self.legend.show_numbers(self.numbers)

    def _session_changed(self, session: object) -> None:
        mode = self.numbers.mode
        self.numbers.changed.disconnect(self._changed)
        self.numbers = NodeNumbers(self.window.bridge.session)
        self.numbers.changed.connect(self._changed)
        self.set_mode(mode)

    def _place(self) -> None:
        if self.legend.isVisible():
            self.legend.resize(*self.legend._size())  # one line or the full legend, as the canvas's height allows
            self.legend.place()

    def _minimap_again(self) -> None:
        navigation = getattr(self.window, "navigation", None)
        if navigation is not None:
            navigation.minimap.invalidate()

    # -- the backends' comparison ------------------------------------------------------------------
    def _watch_comparisons(self, _visible: bool = True) -> None:
        dock = self.window.diff_dock
        if dock.built and self._watched is None:
            view = dock.contents()
            view.shown.connect(self._comparison_shown)
            self._watched = view

    def _comparison_shown(self) -> None:
        self._read_comparison()
        if self.mode == DISAGREE:
            self._minimap_again()

    def _read_comparison(self) -> None:
        """The last backends' comparison (Ctrl+B) as each node's relative difference; none before one ran."""
        self._watch_comparisons()
        check = self._watched.comparison if self._watched is not None else None  # type: ignore[attr-defined]
        backend = self.numbers.session.backend
        if check is None or check.cursor > len(self.numbers.session.steps) or check.dtype != str(backend.dtype) \
                or not check.reference.startswith(f"{backend.name}/"):  # made on another backend or dtype
            self.numbers.set_disagreement(None)
            return
        diffs = {}
        for d in check.nodes:
            both = [x for x in (d.scaled("values"), d.scaled("grads")) if not math.isnan(x)]
            if both:
                diffs[d.name] = max(both)
        self.numbers.set_disagreement(diffs)


def install_colour_by(window: Any) -> ColourBy:
    """View ▸ Colour nodes by, its key and its legend on `window` (a MainWindow)."""
    colour = ColourBy(window)
    colour.menu_into(window.view_menu)
    if not getattr(window, "compare_action", None) or not window.compare_action.isEnabled():
        colour.actions[DISAGREE].setEnabled(False)
        colour.actions[DISAGREE].setToolTip(window.compare_action.toolTip())
    return colour
