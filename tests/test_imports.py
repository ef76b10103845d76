"""`import propscope` loads neither Qt nor torch, and the whole engine works where neither can be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_import_and_run_load_neither_torch_nor_qt(tmp_path: Path) -> None:
    result = run_python(
        """
        import sys
        import propscope
        s = propscope.open_session("xor")
        s.run_to_end()
        assert s.grad("W1") is not None
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "PySide6", "shiboken6", "pyqtgraph"))
        print("LOADED", loaded)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout


BLOCKER = """
import importlib.abc
import sys

BLOCKED = ("torch", "PySide6", "shiboken6", "pyqtgraph")


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None


sys.meta_path.insert(0, Blocker())
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not work")
"""


def test_everything_works_without_torch_and_qt(tmp_path: Path) -> None:
    result = run_python(
        BLOCKER
        + """
import numpy as np

import propscope
from propscope.cli import main
from propscope.debugger.gradcheck import gradcheck
from propscope.graph.examples import EXAMPLES

for name in EXAMPLES:
    for dtype in ("float32", "float64"):
        s = propscope.open_session(name, dtype=dtype)
        while s.step() is not None:
            pass
        assert s.at_end and np.isfinite(s.value("loss")), name
    assert max(r.relative_error for r in gradcheck(propscope.open_session(name, dtype="float64"))) < 1e-7, name
w = propscope.load_example("xor-torch", 0).arrays["layer1.weight"]
assert w.shape == (4, 2) and np.all(np.abs(w) <= 1 / np.sqrt(2)), "the stand-in draws like nn.Linear's bound"
assert main(["trace", "xor-torch", "--out", "T.npz"]) == 0
assert main(["gradcheck", "xor"]) == 0
assert main(["examples"]) == 0
with np.load("T.npz") as t:
    assert "grad/layer1.weight" in t.files
assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
print("ALL GOOD")
""",
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALL GOOD" in result.stdout
    assert "Traceback" not in result.stderr


def test_only_the_gui_package_mentions_qt() -> None:
    """`gui/feature_scan.py` tells shiboken from a module's name alone that propscope's headless modules use no Qt
    (instead of reading each file): that holds while no module outside `propscope.gui` names PySide6."""
    package = Path(__file__).resolve().parents[1] / "propscope"
    mentioning = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                        if "PySide6" in p.read_text(encoding="utf-8") and p.relative_to(package).parts[0] != "gui")
    assert mentioning == []


def test_the_app_spares_later_imports_pysides_source_scan(tmp_path: Path) -> None:
    """After the app's modules load, shiboken answers "uses Qt?" from the name for the standard library, the
    scientific packages and propscope, and still reads the source of any other module."""
    result = run_python(
        """
        import sys
        import propscope.gui.app
        feature = sys.modules["shibokensupport.feature"]
        scanned = []
        answer = feature._mod_uses_pyside
        assert answer.propscope_skips_known

        import types
        def module(name):
            m = types.ModuleType(name)
            m.__file__ = f"{name}.py"
            return m
        import inspect
        real_getsource = inspect.getsource
        inspect.getsource = lambda m: scanned.append(m.__name__) or "import PySide6"
        try:
            print("ANSWERS", [answer(module(n)) for n in
                              ("numpy.linalg", "torch.nn", "json", "propscope.graph.ir", "propscope.gui.theme",
                               "someplugin.view")])
        finally:
            inspect.getsource = real_getsource
        print("SCANNED", scanned)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "ANSWERS [False, False, False, False, True, True]" in result.stdout, result.stdout
    assert "SCANNED ['someplugin.view']" in result.stdout, result.stdout
