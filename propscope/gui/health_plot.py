"""Gradient health: each parameter's gradient norm per epoch, on a log scale.

Vanishing gradients (sigmoid layers stacked deep) show as curves sinking decades below the others;
exploding ones as curves shooting up before the loss turns NaN. Fed like the loss plot: one curve
per parameter, whole arrays from the training log, downsampled to the screen.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QVBoxLayout, QWidget

from .frame_budget import FrameBudget, MeteredPlotWidget
from .loss_plot import curve_width, new_curve
from .plot_style import EpochFollower, NumberAxis, series_color, settle, style_plot, swatches
from .text_strip import TextStrip
from .theme import ThemeManager
from .training_log import TrainingLog


class HealthPlot(QWidget):
    def __init__(self, log: TrainingLog, themes: ThemeManager, budget: FrameBudget | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("gradientHealth")
        self.log, self.themes = log, themes
        self.plot = MeteredPlotWidget(budget, axisItems={"left": NumberAxis("left"), "bottom": NumberAxis("bottom")})
        self.plot.setMenuEnabled(False)
        item = self.plot.getPlotItem()
        item.setLabel("bottom", "epoch")
        item.setLabel("left", "‖∂L/∂θ‖")
        item.getAxis("left").setLogMode(False, True)  # the curves get log10 values from the log itself
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.follower = EpochFollower(self.plot)
        self.summary = TextStrip(2)
        self.summary.setObjectName("healthSummary")
        self.record = QCheckBox("Record")
        self.record.setObjectName("recordGradNorms")
        self.record.setChecked(True)
        self.record.setToolTip("Record every parameter's gradient norm each epoch, from the next run on. On a network "
                               "as small as xor this costs several percent of the training speed.")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addWidget(self.plot, 1)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.summary, 1)
        bar.addWidget(self.record)
        lay.addLayout(bar)
        themes.changed.connect(self._theme)
        self._theme()
        self.refresh()

    def refresh(self) -> None:
        log = self.log
        names = log.norm_names
        if list(self.curves) != names:
            self._rebuild(names)
        x = log.x
        for name, curve in self.curves.items():
            curve.setData(x, log.log10(name))
        self.follower.update(x)
        settle(self.plot)
        if log.n == 0 or not names:
            self.summary.setText("Each parameter's gradient norm per epoch appears here while training.")
            return
        self.summary.setText(swatches([(name, series_color(i)) for i, name in enumerate(names)]))

    def _rebuild(self, names: list[str]) -> None:
        item = self.plot.getPlotItem()
        for curve in self.curves.values():
            item.removeItem(curve)
        self.curves = {name: new_curve(self.plot, name) for name in names}
        self._theme()

    def _theme(self) -> None:
        theme = self.themes.theme
        for i, curve in enumerate(self.curves.values()):
            curve.setPen(pg.mkPen(series_color(i), width=curve_width(theme)))
        style_plot(self.plot, theme)

