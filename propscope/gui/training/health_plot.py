"""Gradient health: each parameter's gradient norm per epoch, on a log scale.

Vanishing gradients (sigmoid layers stacked deep) show as curves sinking decades below the others;
exploding ones as curves shooting up before the loss turns NaN. Fed like the loss plot: one curve
per parameter, whole arrays from the training log, downsampled to the screen. The plot is made when
the widget is first shown (`BuiltOnFirstUse`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QVBoxLayout, QWidget

from ..plot_style import BuiltOnFirstUse, EpochFollower, series_color, settle, style_plot, swatches
from ..theme import ThemeManager
from .frame_budget import FrameBudget
from .log import TrainingLog
from .loss_plot import curve_width, new_curve
from .text_strip import TextStrip

if TYPE_CHECKING:
    import pyqtgraph as pg


class HealthPlot(BuiltOnFirstUse, QWidget):
    lazy_parts = frozenset({"plot", "curves"})

    def __init__(self, log: TrainingLog, themes: ThemeManager, budget: FrameBudget | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("gradientHealth")
        self.log, self.themes = log, themes
        self.budget = budget
        self.follower = EpochFollower()
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
        self.plot_slot = QVBoxLayout()  # where the plot goes when it is made
        lay.addLayout(self.plot_slot, 1)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.summary, 1)
        bar.addWidget(self.record)
        lay.addLayout(bar)
        themes.changed.connect(self._theme)
        self._summarize()

    def build_plots(self) -> None:
        from ..plot_style import NumberAxis
        from .frame_budget import MeteredPlotWidget

        self.plot = MeteredPlotWidget(self.budget, axisItems={"left": NumberAxis("left"),
                                                              "bottom": NumberAxis("bottom")})
        self.plot.setMenuEnabled(False)
        item = self.plot.getPlotItem()
        item.setLabel("bottom", "epoch")
        item.setLabel("left", "‖∂L/∂θ‖")
        item.getAxis("left").setLogMode(False, True)  # the curves get log10 values from the log itself
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.follower.attach(self.plot)
        self.plot_slot.addWidget(self.plot)
        self._theme()
        self.refresh()

    def refresh(self) -> None:
        if not self.wanted_now():  # hidden and never shown: drawn when it first shows
            self._summarize()
            return
        log = self.log
        names = log.norm_names
        if list(self.curves) != names:
            self._rebuild(names)
        x = log.x
        for name, curve in self.curves.items():
            curve.setData(x, log.log10(name))
        self.follower.update(x)
        settle(self.plot)
        self._summarize()

    def _summarize(self) -> None:
        log = self.log
        names = log.norm_names
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
        if not self.built:
            return
        import pyqtgraph as pg

        theme = self.themes.theme
        for i, curve in enumerate(self.curves.values()):
            curve.setPen(pg.mkPen(series_color(i), width=curve_width(theme)))
        style_plot(self.plot, theme)

