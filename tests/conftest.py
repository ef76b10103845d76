"""Test configuration: headless Qt, and markers that skip cleanly where torch or CUDA is missing."""

from __future__ import annotations

import importlib.util
import os
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import FunctionType, ModuleType

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

HAS_TORCH = importlib.util.find_spec("torch") is not None
REFERENCE = Path(__file__).resolve().parent / "reference"


def _has_cuda() -> bool:
    if not HAS_TORCH:
        return False
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_torch = pytest.mark.skip(reason="PyTorch is not installed")
    skip_cuda = pytest.mark.skip(reason="no CUDA device")
    cuda = None
    for item in items:
        if "torch" in item.keywords and not HAS_TORCH:
            item.add_marker(skip_torch)
        if "cuda" in item.keywords:
            cuda = _has_cuda() if cuda is None else cuda
            if not cuda:
                item.add_marker(skip_cuda)


@pytest.fixture
def reference_dir() -> Path:
    """`tests/reference`: the tutorial's programs reproduced for the tests, the truth for the examples."""
    return REFERENCE


@pytest.fixture(scope="session")
def tutorial() -> ModuleType:
    """`tests/reference/tutorial.py`, imported by path (tests/ is not a package)."""
    name = "propscope_tests_tutorial"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REFERENCE / "tutorial.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


# -- PySide's dropped references, caught in the test that drops them ---------------------------------------------
# PySide 6.11 releases a reference to a Python override it does not own when it looks the override up while an
# exception from another override is pending (propscope/gui/guard.py tells the whole story). The function's class
# still uses it, and the process crashes later, wherever the freed function is next touched: one run in a few, in a
# test that did nothing wrong. Here every Python override of a Qt method (ours, pyqtgraph's, the tests' own) is held
# PINS more times, so a dropped reference cannot free it, and the test during which one was dropped fails, naming it.

PINS = 3
_pinned: dict[int, tuple[FunctionType, list[FunctionType], list[tuple[weakref.ref[type], str]]]] = {}
_scanned: weakref.WeakSet[type] = weakref.WeakSet()


def pin_overrides() -> None:
    """Hold every Python override of a Qt method in the classes made since the last call."""
    from qt_overrides import qt_overrides

    def scanned(cls: type) -> bool:
        if cls in _scanned:
            return True
        _scanned.add(cls)
        return False

    for cls, name, function in qt_overrides(skip=scanned):
        entry = _pinned.setdefault(id(function), (function, [function] * PINS, []))
        entry[2].append((weakref.ref(cls), name))


def dropped_references() -> list[str]:
    """The pinned overrides that lost a reference someone else owned (each pinned once more, so it is said once)."""
    dropped = []
    for key, (function, pins, owners) in list(_pinned.items()):
        classes = [(ref(), name) for ref, name in owners]
        holders = sum(1 for cls, name in classes if cls is not None and vars(cls).get(name) is function)
        if not holders:
            del _pinned[key]
            continue
        # who holds it: its classes, the pins, the entry, `function` here and getrefcount's argument
        if sys.getrefcount(function) < holders + len(pins) + 3:
            dropped.append(function.__qualname__)
            pins.append(function)
    return dropped


@pytest.fixture(autouse=True)
def _no_reference_dropped_by_pyside() -> Iterator[None]:
    if "shiboken6" in sys.modules:
        pin_overrides()
    yield
    if "shiboken6" not in sys.modules:
        return
    pin_overrides()
    dropped = dropped_references()
    if dropped:
        pytest.fail(f"PySide dropped a reference it did not own to {', '.join(dropped)}: an exception reached its "
                    "error path from a Python override of a Qt method during this test, or before it and was kept "
                    "there since (see propscope/gui/guard.py); outside the test suite the process would crash later",
                    pytrace=False)


# -- the application font, left as it was found ------------------------------------------------------------------
# Projector mode scales the QApplication's font, which every test shares; a window left open in projector mode (never
# closed, so its ThemeManager never restored the font) made every later window wider, and twenty unrelated layout
# tests failed far from the cause. Here the test that leaves the font changed fails, and the font is put back.


@pytest.fixture(autouse=True)
def _application_font_left_as_found() -> Iterator[None]:
    yield
    if "PySide6.QtWidgets" not in sys.modules:
        return
    from PySide6.QtGui import QFontDatabase
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    system = QFontDatabase.systemFont(QFontDatabase.SystemFont.GeneralFont)
    if app.font() != system:
        left = app.font().toString()
        app.setFont(system)
        pytest.fail(f"the application font was left changed ({left}): a window in projector mode was not closed, "
                    "and every later window would be laid out in its font", pytrace=False)
