"""A run that went wrong without a NaN stopping it says so: a loss that ends far above where it began (diverged),
parameters whose gradient has been exactly 0 for the last epochs (dead units), in the command and in the app; and
the app's output plane shows a diverged model's non-finite outputs as "no data", not black."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PySide6.QtCore import QSettings

import propscope
from propscope.cli import main
from propscope.debugger.trainer import run_health
from propscope.gui.training.output_view import NO_DATA_RGB, plane_rgba


def test_run_health_names_a_diverged_loss_and_dead_parameters() -> None:
    assert run_health([1.0, 0.5, 0.2]) == ""
    assert run_health([1.3, 8.0, 25.0]) == ("the loss rose from 1.3 (the first epoch's) to 25 (the last's): training "
                                            "diverged (a smaller learning rate?)")
    assert run_health([1.3, 1e40, 5.0]) == ""  # came back down to within 10× of the start: noisy, not diverged
    norms = {"W1": [0.3, 0.0, 0.0, 0.0], "b1": [0.1, 0.2, 0.0, 0.0], "W2": [1, 1, 1, 1]}
    dead = run_health([1.0, 0.9, 0.9, 0.9], norms)
    assert dead == "W1, b1 have had no gradient at all for the last 2 epochs (dead units: the activations after " \
                   "them all off?)"
    assert run_health([1.0, 0.9], {"frozen": [0.0, 0.0]}) == ""  # never had one: not a run gone wrong


def test_the_command_warns_of_a_diverged_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "classifier", "--optimizer", "adam", "--lr", "1e6", "--epochs", "60"]) == 0
    err = capsys.readouterr().err
    assert "propscope: warning: the loss rose from" in err and "training diverged" in err
    assert main(["train", "classifier", "--epochs", "60"]) == 0
    assert "diverged" not in capsys.readouterr().err


def test_a_non_finite_output_plane_is_grey_and_quiet() -> None:
    scores = np.full((2, 3, 3), 1 / 3)
    scores[0, 0] = [np.nan, np.nan, np.nan]
    scores[1, 2, 0] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast" reached the user's terminal
        rgba = plane_rgba(scores)
        single = plane_rgba(np.where(np.isfinite(scores[..., :1]), 0.7, np.nan))
    assert tuple(rgba[0, 0, :3]) == NO_DATA_RGB and tuple(rgba[1, 2, :3]) == NO_DATA_RGB
    assert tuple(rgba[0, 1, :3]) != NO_DATA_RGB and tuple(single[0, 0, :3]) == NO_DATA_RGB


def test_the_app_says_a_run_diverged(qtbot, tmp_path) -> None:
    from propscope.gui.main_window import MainWindow

    w = MainWindow(propscope.open_session("classifier"), settings=QSettings(str(tmp_path / "p.ini"),
                                                                         QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    panel = w.training
    w.training_dock.show()
    panel.form.optimizer.setCurrentText("adam")
    panel.form.lr.setText("1e6")
    panel.form.epochs.setValue(60)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.runner.state in ("finished", "diverged") and not panel.runner.busy, timeout=30_000)
    assert panel.runner.state == "finished"
    assert "training diverged" in panel.status.toolTip()
    assert "The loss rose from" in w.status_message.text()
    w.close()
