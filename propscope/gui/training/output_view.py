"""The output view: what the network computes over its whole input space, with the data on top.

For 2-D inputs, the decision boundary: the model's output over the plane as a heatmap (two
classes from blue to red through white at 0.5; more classes mixed from their colours by
probability, paler where the model is unsure), train points filled and test points as rings. For
1-D inputs, the fitted curve over the data. While training runs it is redrawn from the trainer's
live parameters, as often as the training dock's frame budget allows. Nothing is computed or made
until the view is first shown or asked for (`BuiltOnFirstUse`): a hidden view costs no start-up time.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ..bridge import SessionBridge
from ..colormap import COLORS, diverging_rgba
from ..plot_style import SERIES, BuiltOnFirstUse, style_plot
from ..theme import ThemeManager
from .frame_budget import FrameBudget
from .output_grid import OutputGrid
from .text_strip import TextStrip

NO_DATA_RGB = (158, 158, 158)  # where the output is NaN or infinite: the grey the app gives "no data" elsewhere
PALE = 0.6  # how much of a class colour the heatmap keeps, so the points on top stay readable


def class_colors(classes: int) -> np.ndarray:
    """(classes, 3) RGB: blue and red for two classes, as the heatmaps of the inspector; a palette beyond."""
    if classes <= 2:
        return np.array([COLORS[0], COLORS[-1]], dtype=np.float64)
    rgb = [QColor(c) for c in SERIES[:classes]]
    return np.array([(c.red(), c.green(), c.blue()) for c in rgb], dtype=np.float64)


def plane_rgba(scores: np.ndarray) -> np.ndarray:
    """(rows, cols, outputs) scores -> (rows, cols, 4) uint8; one output is P(class 1), several are probabilities.
    Where the model's output is not finite (a diverged run), the plane is the neutral grey of "no data"."""
    broken = ~np.all(np.isfinite(scores), axis=-1)
    scores = np.where(np.isfinite(scores), scores, 0.0)
    if scores.shape[-1] == 1:
        rgba = diverging_rgba(np.clip(scores[..., 0], 0.0, 1.0) - 0.5, 0.5).astype(np.float64)
        rgba[..., :3] = 255 - (255 - rgba[..., :3]) * PALE
        out = rgba.astype(np.uint8)
    else:
        classes = scores.shape[-1]
        mixed = scores @ class_colors(classes)
        sure = (scores.max(axis=-1, keepdims=True) - 1 / classes) / (1 - 1 / classes)
        rgb = 255 - (255 - mixed) * PALE * np.clip(sure, 0.0, 1.0)
        out = np.empty((*scores.shape[:-1], 4), dtype=np.uint8)
        out[..., :3] = np.clip(rgb, 0, 255)
        out[..., 3] = 255
    out[broken, :3] = NO_DATA_RGB
    return out


class OutputView(BuiltOnFirstUse, QWidget):
    # the grid and scores too: they are computed for the plot, so asking for them makes it
    lazy_parts = frozenset({"plot", "image", "curve", "train_points", "test_points", "grid", "scores"})

    def __init__(self, bridge: SessionBridge, themes: ThemeManager, budget: FrameBudget | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("outputView")
        self.bridge, self.themes = bridge, themes
        self.budget = budget
        self.caption = TextStrip(2)
        self.caption.setObjectName("outputCaption")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        self.plot_slot = QVBoxLayout()  # where the plot goes when it is made
        lay.addLayout(self.plot_slot, 1)
        lay.addWidget(self.caption)
        self.data: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None = None
        bridge.traceChanged.connect(self.redraw)
        themes.changed.connect(self._theme)

    def build_plots(self) -> None:
        import pyqtgraph as pg

        from .frame_budget import MeteredPlotWidget

        self.grid: OutputGrid | None = None
        self.scores: np.ndarray | None = None  # the last evaluation, (grid points, outputs)
        self.plot = MeteredPlotWidget(self.budget)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.image = pg.ImageItem(axisOrder="row-major")
        self.curve = pg.PlotDataItem()
        self.train_points = pg.ScatterPlotItem()
        self.test_points = pg.ScatterPlotItem()
        for item in (self.image, self.curve, self.train_points, self.test_points):
            self.plot.addItem(item)
        self.plot_slot.addWidget(self.plot)
        self._theme()
        if self.data is not None:
            self.set_data(*self.data)

    # -- data and model ----------------------------------------------------------------------------
    def set_data(self, x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None = None,
                 y_test: np.ndarray | None = None) -> None:
        """The points to draw (and to size the plane by); the model is taken from the bridge's session."""
        self.data = (np.asarray(x), np.asarray(y), x_test, y_test)
        if not self.wanted_now():  # hidden and never shown: drawn when it first shows
            return
        try:
            self.grid = OutputGrid(self.bridge.session, x, x_test)
        except Exception as exc:  # a backend that cannot compile the network for the grid
            self.grid = None
            self.caption.setText(escape(f"The output view cannot run this network: {exc}"))
        self._draw_points()
        self.redraw()
        if self.grid is not None and self.grid.kind is not None:
            self.plot.getPlotItem().getViewBox().setRange(
                xRange=(self.grid.low[0], self.grid.high[0]),
                yRange=(self.grid.low[1], self.grid.high[1]) if self.grid.kind == "plane" else None, padding=0)

    def redraw(self, params: Mapping[str, Any] | None = None) -> None:
        """Evaluate the model (with `params` over the session's, e.g. the trainer's live ones) and draw it."""
        if not self.wanted_now():
            return
        grid = self.grid
        if grid is not None and grid.backend is not self.bridge.session.backend and self.data is not None:
            self.set_data(*self.data)  # another backend (or dtype): compile the grid's program again
            return
        if grid is None or grid.kind is None:
            self.image.clear()
            self.curve.setData([], [])
            if grid is not None:
                self.caption.setText(escape(grid.reason))
            return
        self.scores = grid.evaluate(params)
        if grid.kind == "plane":
            self.image.setImage(plane_rgba(grid.image(self.scores)), autoLevels=False)
            dx, dy = grid.xs[1] - grid.xs[0], grid.ys[1] - grid.ys[0]
            self.image.setRect(QRectF(grid.xs[0] - dx / 2, grid.ys[0] - dy / 2,
                                      grid.xs[-1] - grid.xs[0] + dx, grid.ys[-1] - grid.ys[0] + dy))
            self.curve.setData([], [])
        else:
            self.image.clear()
            self.curve.setData(grid.xs, self.scores[:, 0])
        self.caption.setText(self._caption())

    # -- drawing -----------------------------------------------------------------------------------
    def _draw_points(self) -> None:
        import pyqtgraph as pg

        theme = self.themes.theme
        size = theme.px(6.5)
        outline = pg.mkPen(theme.color("text"), width=theme.pen_width(0.6))
        if self.data is None or self.grid is None or self.grid.kind is None or not len(self.data[0]):
            self.train_points.setData([], [])
            self.test_points.setData([], [])
            return
        x, y, x_test, y_test = self.data
        if self.grid.kind == "plane":
            colors = class_colors(max(2, getattr(self.grid, "classes", 2)))

            def brushes(labels: np.ndarray) -> list[Any]:
                idx = np.clip(np.rint(labels.reshape(len(labels), -1)[:, 0]).astype(int), 0, len(colors) - 1)
                return [pg.mkBrush(*colors[i]) for i in idx]

            self.train_points.setData(x[:, 0], x[:, 1], brush=brushes(y), pen=outline, size=size)
            if x_test is not None and y_test is not None and len(x_test):
                rings = [pg.mkPen(b.color(), width=theme.pen_width(1.8)) for b in brushes(np.asarray(y_test))]
                self.test_points.setData(x_test[:, 0], x_test[:, 1], pen=rings, brush=pg.mkBrush(None),
                                         size=size + theme.px(2))
            else:
                self.test_points.setData([], [])
        else:
            self.train_points.setData(x.reshape(-1), np.asarray(y).reshape(-1),
                                      brush=pg.mkBrush(theme.color("muted")), pen=None, size=size)
            if x_test is not None and y_test is not None and len(x_test):
                self.test_points.setData(np.asarray(x_test).reshape(-1), np.asarray(y_test).reshape(-1),
                                         pen=pg.mkPen(theme.color("gradient"), width=theme.pen_width(1.5)),
                                         brush=pg.mkBrush(None), size=size + theme.px(2))
            else:
                self.test_points.setData([], [])

    def _caption(self) -> str:
        if self.grid is None or self.data is None:
            return ""
        n_train = len(self.data[0])
        n_test = 0 if self.data[2] is None else len(self.data[2])
        points = f"{n_train} train" + (f", {n_test} test (rings)" if n_test else "")
        if self.grid.kind == "plane":
            return f"Model output over the plane; {points} points."
        return f"Fitted curve over the data; {points} points."

    def _theme(self) -> None:
        if not self.built:
            return
        import pyqtgraph as pg

        theme = self.themes.theme
        style_plot(self.plot, theme, widest_tick="−0.5")
        self.curve.setPen(pg.mkPen(theme.color("forward"), width=theme.pen_width(2.0)))
        self._draw_points()
