"""`propscope open`: screenshots from the command line, headless; the CLI imports Qt only for a window."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PySide6.QtGui import QImage

from propscope import cli

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@pytest.mark.parametrize("projector", [False, True])
def test_open_with_screenshot_renders_and_exits(qapp, tmp_path, capsys, projector):
    out = tmp_path / "shot.png"
    argv = ["open", "xor", "--step", "7", "--size", "1024x768", "--screenshot", str(out)]
    assert cli.main([*argv, "--projector"] if projector else argv) == 0
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1024, 768)
    assert f"wrote {out}" in capsys.readouterr().out
    assert not qapp.topLevelWidgets() or all(not w.isVisible() for w in qapp.topLevelWidgets())


@pytest.mark.parametrize("argv, message", [
    (["open", "xor", "--size", "big"], "WIDTHxHEIGHT"),
    (["open", "xor", "--step", "99"], "outside 0..10"),
    (["open", "no-such-example"], "unknown example"),
])
def test_open_reports_bad_arguments(qapp, tmp_path, capsys, argv, message):
    assert cli.main([*argv, "--screenshot", str(tmp_path / "x.png")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_no_arguments_means_open_xor():
    args = cli.build_parser().parse_args(["open", "xor"])
    assert args.func is cli.cmd_open and args.target == "xor"
    parser = cli.build_parser()
    assert "open" in parser._subparsers._actions[-1].choices  # what main() checks to open xor by default


def test_importing_propscope_and_its_cli_loads_no_qt():
    code = ("import sys, propscope, propscope.cli; propscope.cli.build_parser(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", [["open", "xor"], ["lesson", "1"]])
def test_the_app_turns_the_collector_back_on_once_shown(qapp, monkeypatch, tmp_path, command):
    """The console script starts with Python's cyclic GC off (propscope/console.py); the app's event loop turns it
    on in its first round, so a long session does not run without it."""
    import gc

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    import propscope.gui.app
    import propscope.gui.lessons

    def own_settings():  # not the user's: the window saves its layout as it closes
        return QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat)

    monkeypatch.setattr(propscope.gui.app, "QSettings", own_settings)
    monkeypatch.setattr(propscope.gui.lessons, "QSettings", own_settings)

    seen = []

    def one_round(self):
        seen.append(gc.isenabled())
        QApplication.processEvents()
        seen.append(gc.isenabled())
        for window in QApplication.topLevelWidgets():
            window.close()
        return 0

    monkeypatch.setattr(QApplication, "exec", one_round)
    gc.disable()
    try:
        assert cli.main(command) == 0
    finally:
        enabled = gc.isenabled()
        gc.enable()
    assert seen == [False, True] and enabled
