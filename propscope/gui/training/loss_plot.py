"""The live loss plot: train and test loss per epoch, a log-scale toggle, a readout under the mouse, export.

One `PlotDataItem` per curve, fed whole with `setData` from the training log's float64 arrays when
the training view's timer says the log grew (at most ~30 times a second). Peak downsampling and
clip-to-view keep a million-epoch history cheap to draw: only about two points per pixel column
reach the screen. The plot itself is made when the widget is first shown (`BuiltOnFirstUse`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QEvent, QPointF
from PySide6.QtWidgets import QCheckBox, QFileDialog, QToolButton, QVBoxLayout, QWidget

from ..flow_layout import FlowLayout, hold_wrapped_height
from ..format import fmt_num
from ..guard import guarded
from ..plot_style import BuiltOnFirstUse, EpochFollower, settle, style_plot, swatches
from ..theme import Theme, ThemeManager
from .frame_budget import FrameBudget
from .log import TrainingLog
from .text_strip import TextStrip

if TYPE_CHECKING:
    import pyqtgraph as pg


MIN_WIDTH = 60  # a small window (projector mode at 1024×768) must still fit the dock


def curve_width(theme: Theme, factor: float = 1.0) -> float:
    """One-pixel lines except in projector mode: wider pens cost Qt's rasterizer several times more."""
    return max(1.0, round(theme.pen_width(factor))) if theme.projector else 1.0


def new_curve(plot: pg.PlotWidget, name: str) -> pg.PlotDataItem:
    """A curve that stays smooth with a million points: peak downsampling, clipped to the view."""
    curve = plot.plot(name=name)  # connect="auto": gaps only where there are NaNs
    curve.setDownsampling(auto=True, method="peak")
    curve.opts["autoDownsampleFactor"] = 1.0  # one bin per pixel column (its min and max), not pyqtgraph's five
    curve.setClipToView(True)
    return curve


class LossPlot(BuiltOnFirstUse, QWidget):
    lazy_parts = frozenset({"plot", "train_curve", "test_curve", "cursor_line"})

    def __init__(self, log: TrainingLog, themes: ThemeManager, budget: FrameBudget | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lossPlot")
        self.log, self.themes = log, themes
        self.budget = budget
        self._tip = ""
        self.follower = EpochFollower()
        self.log_scale = QCheckBox("Log scale")
        self.log_scale.setObjectName("lossLogScale")
        self.log_scale.setToolTip("Show the loss on a logarithmic axis: late, small improvements stay visible")
        self.log_scale.toggled.connect(self._set_log)
        self.readout = TextStrip(1)
        self.readout.setObjectName("lossReadout")
        self.csv_button = QToolButton()
        self.csv_button.setText("CSV…")
        self.csv_button.setToolTip("Save every epoch's losses and gradient norms as CSV")
        self.csv_button.clicked.connect(self._csv_dialog)
        self.png_button = QToolButton()
        self.png_button.setText("PNG…")
        self.png_button.setToolTip("Save this plot as an image")
        self.png_button.clicked.connect(self._png_dialog)
        # the buttons wrap under the checkbox where the column is narrow (1024×768, projector mode): in one row they
        # squeezed "Log scale" to "Log scal"
        bar = FlowLayout()
        bar.addWidget(self.log_scale)
        bar.addWidget(self.csv_button)
        bar.addWidget(self.png_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        self.plot_slot = QVBoxLayout()  # where the plot goes when it is made
        lay.addLayout(self.plot_slot, 1)
        lay.addWidget(self.readout)
        lay.addLayout(bar)
        hold_wrapped_height(self)  # the buttons' line under "Log scale", cut off in a short dock otherwise
        self._hovered: int | None = None
        themes.changed.connect(self._theme)
        self.log_scale.setChecked(True)
        self._show_readout()

    def build_plots(self) -> None:
        import pyqtgraph as pg

        from ..plot_style import NumberAxis
        from .frame_budget import MeteredPlotWidget

        self.plot = MeteredPlotWidget(self.budget, axisItems={"left": NumberAxis("left"),
                                                              "bottom": NumberAxis("bottom")})
        self.plot.setMenuEnabled(False)
        item = self.plot.getPlotItem()  # no grid: its lines cost more to draw than the rest of the plot
        item.setLabel("bottom", "epoch")
        item.setLabel("left", "loss")
        self.train_curve = new_curve(self.plot, "train")
        self.test_curve = new_curve(self.plot, "test")
        self.follower.attach(self.plot)
        self.cursor_line = pg.InfiniteLine(angle=90, movable=False)
        self.cursor_line.setVisible(False)
        self.plot.addItem(self.cursor_line, ignoreBounds=True)
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self.plot_slot.addWidget(self.plot)
        item.getAxis("left").setLogMode(False, self.log_scale.isChecked())
        self._theme()
        self.refresh()

    def refresh(self) -> None:
        """Hand the log's arrays to the curves (views, not copies) and update the readout.

        On a log scale the curves get the log's own log10 columns and only the axis is told: pyqtgraph's
        log mode would take log10 of the whole history again every frame.
        """
        if not self.wanted_now():  # hidden and never shown: drawn when it first shows
            self._show_readout()
            return
        log = self.log
        x = log.x
        on = self.log_scale.isChecked()
        # the test curve's scale is said in the readout beside its colour, not on the axis: "loss (test scaled to 160
        # samples)" stood taller than the plot at 1024×768 and in projector mode, cut to "loss (te"
        tip = (f"The test loss sums over fewer samples than the training loss: it is drawn scaled to the training "
               f"set's {log.test_scaled_to} samples (×{log.test_scale:.3g})" if log.test_scaled_to and log.has_test
               else "")
        if tip != self._tip:
            self._tip = tip
            self.plot.setToolTip(tip)
        self.train_curve.setData(x, log.log10("loss") if on else log.loss)
        if log.has_test:
            self.test_curve.setData(x, log.log10("test_loss") if on else log.test_loss)
        else:
            self.test_curve.setData(x[:0], x[:0])
        self.test_curve.setVisible(log.has_test)
        self.follower.update(x)
        settle(self.plot)
        self._show_readout()

    def _set_log(self, on: bool) -> None:
        if not self.built:
            return
        self.plot.getPlotItem().getAxis("left").setLogMode(False, on)
        self.refresh()
        self.plot.getPlotItem().enableAutoRange()

    # -- the readout under the mouse -----------------------------------------------------------
    def _hover(self, pos: QPointF) -> None:
        vb = self.plot.getPlotItem().getViewBox()
        n = self.log.n
        if n == 0 or not vb.sceneBoundingRect().contains(pos):
            self._hovered = None
            self.cursor_line.setVisible(False)
        else:
            x = vb.mapSceneToView(pos).x()
            i = int(np.clip(np.searchsorted(self.log.x, x), 0, n - 1))
            if i > 0 and abs(self.log.x[i - 1] - x) < abs(self.log.x[i] - x):
                i -= 1
            self._hovered = i
            self.cursor_line.setPos(float(self.log.x[i]))
            self.cursor_line.setVisible(True)
        self._show_readout()

    def _show_readout(self) -> None:
        """The hovered epoch, or the latest one."""
        log = self.log
        theme = self.themes.theme
        if log.n == 0:
            self.readout.setText("No epochs yet: press Play.")
            return
        i = self._hovered if self._hovered is not None and self._hovered < log.n else log.n - 1
        pairs = [(f"train {fmt_num(log.loss[i])}", theme.color("forward"))]
        if log.has_test and np.isfinite(log.test_loss[i]):
            scale = f" (×{log.test_scale:.2g})" if log.test_scaled_to else ""  # drawn scaled to the training set
            pairs.append((f"test{scale} {fmt_num(log.test_loss[i])}", theme.color("gradient")))
        self.readout.setText(f"epoch {int(log.x[i])}  {swatches(pairs)}")

    # -- export ------------------------------------------------------------------------------------
    def export_csv(self, path: str | Path) -> Path:
        return self.log.to_csv(path)

    def export_png(self, path: str | Path) -> bool:
        return bool(self.plot.grab().save(str(path)))

    def _csv_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save losses", "losses.csv", "CSV files (*.csv)")
        if path:
            self.export_csv(path)

    def _png_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save loss plot", "loss.png", "PNG images (*.png)")
        if path:
            self.export_png(path)

    # -- theme -----------------------------------------------------------------------------------
    def fit_width(self) -> None:
        """No narrower than the "Log scale" checkbox (the buttons wrap below it), in the type of the moment."""
        margins = self.layout().contentsMargins()
        self.setMinimumWidth(max(MIN_WIDTH, self.log_scale.sizeHint().width() + margins.left() + margins.right()))

    @guarded
    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:  # projector mode's type reaches the checkbox after the theme
            self.fit_width()

    def _theme(self) -> None:
        if not self.built:
            return
        import pyqtgraph as pg

        theme = self.themes.theme
        style_plot(self.plot, theme)
        self.train_curve.setPen(pg.mkPen(theme.color("forward"), width=curve_width(theme)))
        self.test_curve.setPen(pg.mkPen(theme.color("gradient"), width=curve_width(theme)))
        self.cursor_line.setPen(pg.mkPen(theme.color("muted"), width=curve_width(theme, 0.8)))
        self._show_readout()
