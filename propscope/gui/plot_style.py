"""One look for every pyqtgraph plot: the theme's ground, text, pens and type size (projector mode included).

Legends are plain coloured labels under the plots rather than pyqtgraph legends drawn over the
curves, and log axes read as numbers (0.3, 1e−3) rather than 3·10⁻¹.

pyqtgraph takes a few hundred milliseconds to import, and no plot shows in the first window: it
is imported when a plot is first made (`BuiltOnFirstUse`), never at module level here.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor, QFont, QFontMetrics
from PySide6.QtWidgets import QLabel, QSizePolicy

from .format import fmt_num
from .guard import guarded
from .theme import Theme

if TYPE_CHECKING:
    import pyqtgraph as pg

# Distinct line colours for series without a meaning of their own (one per parameter), dark enough for a
# white projector screen and readable on the dark theme.
SERIES = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22")


def series_color(i: int) -> QColor:
    return QColor(SERIES[i % len(SERIES)])


def _number_axis_class() -> type:
    import pyqtgraph as pg

    class NumberAxis(pg.AxisItem):
        """An axis whose log-mode ticks are written as plain numbers, and which never rescales by an SI prefix."""

        def __init__(self, orientation: str) -> None:
            super().__init__(orientation)
            self.enableAutoSIPrefix(False)

        @guarded
        def paint(self, *args: Any) -> None:  # pyqtgraph's paint asks the tick methods below: nothing may escape
            super().paint(*args)

        def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list:
            """On a horizontal axis, only spacings whose labels fit side by side ("2000 4000" and not
            "20004000"): a spacing too tight for the widest label grows by 2, 2.5, 2 (1-2-5 steps) until it fits."""
            levels = super().tickSpacing(minVal, maxVal, size)
            if self.orientation not in ("top", "bottom") or not levels or maxVal <= minVal or size <= 0 or self.logMode:
                return levels
            metrics = QFontMetrics(self.style.get("tickFont") or self.font())
            widest = max(metrics.horizontalAdvance(fmt_num(v, 6)) for v in (minVal, maxVal, (minVal + maxVal) / 2))
            room = widest + metrics.horizontalAdvance("MM")  # a gap of two wide letters between labels
            px_per_unit = size / (maxVal - minVal)
            kept = [(spacing, offset) for spacing, offset in levels if spacing * px_per_unit >= room]
            if kept:
                return kept
            spacing, offset = levels[0]
            steps = iter([2.0, 2.5, 2.0] * 20)
            while spacing * px_per_unit < room:
                spacing *= next(steps)
            return [(spacing, offset)]

        def logTickValues(self, minVal: float, maxVal: float, size: float, stdTicks: list) -> list:
            """pyqtgraph's levels, without the minor ticks that repeat a major one (their labels would overprint)."""
            levels = super().logTickValues(minVal, maxVal, size, stdTicks)
            major = {round(v, 9) for spacing, values in levels if spacing is not None for v in values}
            return [(s, v if s is not None else [x for x in v if round(x, 9) not in major]) for s, v in levels]

        def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
            """Label 1, 2 and 5 times a power of ten; the other minor ticks would crowd into each other."""
            out = []
            for v in 10 ** np.asarray(values, dtype=float) * scale:
                mantissa = v / 10 ** np.floor(np.log10(v)) if v > 0 and np.isfinite(v) else 0.0
                out.append(fmt_num(v, 2) if min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6 else "")
            return out

    return NumberAxis


def swatches(pairs: list[tuple[str, QColor]]) -> str:
    """HTML for a legend line: a coloured bar and a name per series."""
    return "  ".join(f"<span style='color:{c.name()}'>━</span>&nbsp;{escape(name)}" for name, c in pairs)


class EpochFollower:
    """Keeps a plot's x range on the epochs drawn while the curves grow, until the user pans or zooms.

    pyqtgraph's x auto-range would follow too, but it takes the bounds of the downsampled curve, whose
    last point moves with the downsampling factor, which depends on the range: now and then the two
    chase each other and the plot repaints without end. Its "A" button turns following back on.
    """

    def __init__(self, plot: pg.PlotWidget | None = None) -> None:
        self.view: Any = None
        self.following = True
        self._reset_waiting = False  # reset() came before the plot did
        if plot is not None:
            self.attach(plot)

    def attach(self, plot: pg.PlotWidget) -> None:
        """Follow `plot` (made after this follower, when its widget is first shown)."""
        self.view = plot.getPlotItem().getViewBox()
        self.view.enableAutoRange(x=False)
        self.view.sigRangeChangedManually.connect(self._by_hand)
        if self._reset_waiting:
            self._reset_waiting = False
            self.reset()

    def _by_hand(self, *_args: object) -> None:
        self.following = False

    def reset(self) -> None:
        """A new model: follow its epochs from the start, and let y fit its losses (not the last model's)."""
        self.following = True
        if self.view is None:  # no plot yet: done when it comes
            self._reset_waiting = True
            return
        self.view.enableAutoRange(x=False)
        self.view.setXRange(0.0, 1.0, padding=0.02)
        self.view.enableAutoRange(y=True)

    def update(self, x: np.ndarray) -> None:
        if self.view is None:
            return
        if self.view.autoRangeEnabled()[0]:  # the "A" button
            self.following = True
            self.view.enableAutoRange(x=False)
        if self.following and len(x):
            first, last = float(x[0]), float(x[-1])
            self.view.setXRange(first, max(last, first + 1.0), padding=0.02)


def settle(plot: pg.PlotWidget) -> None:
    """Apply the auto-range that new data asks for now, not at paint time: pyqtgraph would otherwise change
    the range in the middle of the paint and paint everything a second time."""
    plot.getPlotItem().getViewBox().prepareForPaint()


def steady_label(label: QLabel, lines: int, font: QFont | None = None) -> None:
    """Give a label that changes many times a second a fixed height of `lines` lines and no say in the width,
    so a new text repaints the label alone instead of relaying out (and repainting) the whole dock.

    `font`: the font it is about to show (on a theme change, the application's: the label still holds the old one
    then, and projector mode's three lines got the height of three small ones, cut at top and bottom)."""
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    label.setFixedHeight(QFontMetrics(font or label.font()).lineSpacing() * lines + 4)


def style_plot(plot: pg.PlotWidget, theme: Theme, font_px: float = 11, widest_tick: str = "0.0005") -> None:
    """Ground, axes and their labels in the theme's colours and sizes; the left axis as wide as `widest_tick`."""
    import pyqtgraph as pg

    fg = theme.color("text")
    font = theme.font(font_px)
    metrics = QFontMetrics(font)
    plot.setBackground(theme.color("background"))
    item = plot.getPlotItem()
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setTickFont(font)
        axis.setPen(pg.mkPen(fg, width=1 if not theme.projector else round(theme.pen_width(0.8))))
        axis.setTextPen(pg.mkPen(fg))
        label = axis.labelText
        if label:
            axis.setLabel(label, color=fg.name(), **{"font-size": f"{theme.px(font_px)}px"})
        # A fixed size: left to itself an axis resizes whenever its widest tick label changes, which re-lays
        # out the plot and paints it again, frame after frame, while the curve grows.
        room = metrics.height() + theme.px(2) if label else 0
        if name == "left":
            axis.setWidth(metrics.horizontalAdvance(widest_tick) + room + theme.px(8))
        else:
            axis.setHeight(metrics.height() + room + theme.px(8))


class BuiltOnFirstUse:
    """A widget whose pyqtgraph parts are made the first time it is shown or one of them is asked for.

    The first window paints without importing pyqtgraph; a test (or a caller) reading a part of a
    hidden widget gets it made on the spot, so nothing sees a half-made widget. Subclasses name
    their parts in `lazy_parts` and make them in `build_plots`.
    """

    lazy_parts: frozenset[str] = frozenset()
    built = False
    build_on_show = True  # False: made only when a part is asked for (plots on a tab not shown yet)

    def build_plots(self) -> None:
        raise NotImplementedError

    def ensure_built(self) -> None:
        if not self.built:
            self.built = True
            self.build_plots()
            for callback in self.__dict__.pop("_on_built", []):
                callback()

    def when_built(self, callback: Any) -> None:
        """Call `callback` once the parts exist (now, if they do): for things drawn on the plots."""
        if self.built:
            callback()
        else:
            self.__dict__.setdefault("_on_built", []).append(callback)

    def wanted_now(self) -> bool:
        """Whether new content should be drawn now: the parts exist, or the widget is on screen."""
        if self.built:
            return True
        if self.build_on_show and self.on_screen():
            self.ensure_built()
            return True
        return False

    def on_screen(self) -> bool:
        """Shown and not covered: a dock tabbed behind another counts as visible to Qt, but shows nothing."""
        return bool(self.isVisible() and not self.visibleRegion().isEmpty())

    @guarded
    def paintEvent(self, event: Any) -> None:
        # The first paint, not the first show: a tab behind another is "shown" with its window but never painted.
        # The parts are made just after it (not while Qt paints), and paint themselves.
        if self.build_on_show and not self.built and "_build_timer" not in self.__dict__:
            # one timer, connected once: PySide 6.11's QTimer.singleShot(msec, context, callable) drops one
            # reference too many to the callable, and called on every paint that freed the method's function
            # while the class still held it (a crash in a later garbage collection)
            timer = QTimer(self)  # type: ignore[arg-type]
            timer.setSingleShot(True)
            timer.timeout.connect(self.ensure_built)
            self.__dict__["_build_timer"] = timer
            timer.start(0)
        super().paintEvent(event)  # type: ignore[misc]

    def __getattr__(self, name: str) -> Any:
        if name in type(self).lazy_parts and not self.built:
            self.ensure_built()
            return getattr(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    """`NumberAxis`, made (with pyqtgraph's import) when first asked for."""
    if name == "NumberAxis":
        cls = _number_axis_class()
        globals()["NumberAxis"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
