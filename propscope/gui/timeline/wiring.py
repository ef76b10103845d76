"""The timeline's place in the main window: under the canvas, its keys in the Debug menu, markers on the plots."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QMenu, QVBoxLayout, QWidget

from ..menus import menu_titled
from .bar import TimelineBar
from .markers import EpochMarkers
from .rewind import rewind_to_shown_epoch


def find_menu(window: Any, title: str) -> QMenu | None:
    return menu_titled(window, title)


def install_timeline(window: Any) -> TimelineBar:
    """Put a TimelineBar under the window's canvas and connect it to the training dock; returns it."""
    bar = TimelineBar(window.bridge, window)
    canvas = window.takeCentralWidget()  # taken, not replaced: setCentralWidget would delete it
    holder = QWidget(window)
    holder.setObjectName("canvasWithTimeline")
    # takeCentralWidget hands the canvas to Python; setParent gives it back to Qt (the holder), or Python would
    # delete it a second time when its wrapper goes, after the window has deleted it with its children
    canvas.setParent(holder)
    lay = QVBoxLayout(holder)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(0)
    lay.addWidget(canvas, 1)
    lay.addWidget(bar)
    window.setCentralWidget(holder)
    training = window.training
    markers = EpochMarkers([training.loss_plot, training.health_plot], window.themes)  # lines added once plotted
    bar.markers = markers
    bar.epochShown.connect(markers.show_epoch)
    bar.message.connect(window.message)
    runner = training.runner

    def state_changed(_state: str) -> None:
        bar.set_training(runner.busy)
        if runner.busy:
            bar.stop()
            markers.show_epoch(None)

    def about_to_train() -> None:
        said = rewind_to_shown_epoch(window.bridge.session, runner)
        if said is not None:
            bar.refresh()
            bar.message.emit(said)

    runner.stateChanged.connect(state_changed)
    training.aboutToTrain.connect(about_to_train)
    runner.progressed.connect(lambda: bar.follow_recording() if runner.busy else None)
    training.reset.clicked.connect(bar.forget)
    window.bridge.sessionChanged.connect(lambda _s: markers.show_epoch(None))
    menu = find_menu(window, "Debug")
    timeline_menu = menu.addMenu("&Timeline") if menu is not None else None
    for action in bar.actions_:
        window.addAction(action)
        if timeline_menu is not None:
            timeline_menu.addAction(action)
    return bar
