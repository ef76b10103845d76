"""No exception from our Python code reaches PySide's error path for overrides (propscope/gui/guard.py says why).

The hazard is PySide's: with 6.11, an exception leaving a Python override of a Qt virtual while Python code is
waiting on Qt (`show()`, `resize()`...) makes PySide release references it does not own, to every override it looks up
for the first time before that call returns; a later touch of the freed function crashes the process. So every Python
override of a Qt virtual in `propscope.gui` is wrapped by `guarded` or `guarded_answer`.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import textwrap

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QWidget
from qt_overrides import qt_overrides

import propscope.gui
from propscope.gui.guard import guarded, guarded_answer, is_guarded

# Asked for by Qt for every item on every repaint, and each only returns a rectangle made in `__init__` before any
# call into Qt (or an empty one): nothing there can raise, and a wrapper would cost a call per item per frame.
UNGUARDED = {
    "propscope.gui.canvas.boxes.FrameItem.boundingRect",
    "propscope.gui.canvas.items.EdgeItem.boundingRect",
    "propscope.gui.canvas.items.GradLabel.boundingRect",
    "propscope.gui.canvas.items.NodeItem.boundingRect",
    "propscope.gui.canvas.items.RoleLabel.boundingRect",
    "propscope.gui.canvas.overview.OverviewItem.boundingRect",
}


def _qt_overrides() -> dict[str, object]:
    """Every method of a `propscope.gui` class that overrides a method of a Qt base class, by qualified name."""
    for module in pkgutil.walk_packages(propscope.gui.__path__, "propscope.gui."):
        importlib.import_module(module.name)
    from propscope.gui.training import frame_budget

    assert frame_budget.MeteredPlotWidget  # made when first asked for
    return {f"{cls.__module__}.{cls.__qualname__}.{name}": function
            for cls, name, function in qt_overrides(skip=lambda cls: not cls.__module__.startswith("propscope."))}


def test_every_python_override_of_a_qt_method_in_the_gui_is_guarded() -> None:
    overrides = _qt_overrides()
    assert "propscope.gui.inspect.heat_grid.HeatGrid.paintEvent" in overrides  # the search finds what it should
    assert "propscope.gui.inspect.tensor_view.TensorTableModel.data" in overrides
    unguarded = sorted(name for name, function in overrides.items() if not is_guarded(function))
    assert unguarded == sorted(UNGUARDED & overrides.keys()), (
        "wrap these in propscope.gui.guard's guarded (returns nothing) or guarded_answer(default)")


def test_an_exception_in_a_guarded_override_goes_to_excepthook_and_costs_no_reference(qtbot) -> None:
    class Raising(QWidget):
        @guarded
        def resizeEvent(self, event: object) -> None:
            raise ValueError("a bug in a resize")

    class Child(QWidget):  # its overrides are first looked up while the parent's resize is on the way
        @guarded
        def showEvent(self, event: object) -> None:
            pass

        @guarded_answer(QSize())
        def sizeHint(self) -> QSize:
            return QSize(10, 10)

    functions = [Child.__dict__["showEvent"], Child.__dict__["sizeHint"]]
    before = [sys.getrefcount(f) for f in functions]
    parent = Raising()
    Child(parent)
    qtbot.addWidget(parent)
    with qtbot.captureExceptions() as caught:
        parent.show()  # Qt resizes the parent (raises), then shows and sizes the child
    assert [str(exc) for _, exc, _ in caught] == ["a bug in a resize"]
    assert [sys.getrefcount(f) for f in functions] == before


def test_pyside_still_drops_a_reference_for_an_unguarded_override() -> None:
    """Why the guards exist, shown in a process of its own: when this fails, PySide has fixed its error path and
    the guards are a safety net only."""
    script = textwrap.dedent("""
        import sys
        from PySide6.QtWidgets import QApplication, QWidget
        app = QApplication([])

        class Raising(QWidget):
            def resizeEvent(self, event):
                raise ValueError("unguarded")

        class Child(QWidget):
            def resizeEvent(self, event):
                pass

        function = Child.__dict__["resizeEvent"]
        pins = [function] * 3  # so that the dropped reference frees nothing
        before = sys.getrefcount(function)
        parent = Raising()
        Child(parent)
        try:
            parent.show()
        except ValueError:
            pass
        print(before - sys.getrefcount(function))
        sys.stdout.flush()
        import os
        os._exit(0)  # the lost exception may still be stored: no teardown
    """)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1", out.stdout + out.stderr


def test_no_test_leaves_a_long_bare_single_shot_timer_behind() -> None:
    """A bare `QTimer.singleShot(ms, f)` cannot be stopped, so it outlives its test when that test ends first: a
    30-second safety net in test_gui_show.py closed whatever window a test 30 seconds later had open (that test's
    session went on moving while its closed window heard nothing: a failure in a few full runs, in a different test
    each time). A test's timer longer than a moment is a QTimer of its own, stopped in a `finally`."""
    import re
    from pathlib import Path

    bare = re.compile(r"QTimer\.singleShot\(\s*([\d_]+)")
    long = [f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}"
            for path in sorted(Path(__file__).parent.glob("*.py"))
            for text in [path.read_text(encoding="utf-8")]
            for m in bare.finditer(text) if int(m.group(1).replace("_", "")) >= 1000]
    assert long == []
