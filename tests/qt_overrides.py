"""Every Python method that overrides a method of a Qt class: what PySide 6.11 may drop a reference to when an
exception from another override is pending (propscope/gui/guard.py). Used by the suite's reference pins
(conftest.py) and by the check that every override in propscope.gui is guarded (test_gui_guard.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import FunctionType


def is_qt(cls: type) -> bool:
    return cls.__module__.startswith(("PySide6.", "shiboken6"))


def qt_overrides(skip: Callable[[type], bool] = lambda cls: False) -> Iterator[tuple[type, str, FunctionType]]:
    """(class, name, function) for each Python subclass of a Qt class alive now and each of its own methods that
    overrides a method of a Qt base; `skip` leaves a class out (its subclasses are still visited)."""
    from shiboken6 import Shiboken

    stack: list[type] = [Shiboken.Object]
    seen = set(stack)
    while stack:
        for cls in type.__subclasses__(stack.pop()):
            if cls in seen:
                continue
            seen.add(cls)
            stack.append(cls)
            if is_qt(cls) or skip(cls):
                continue
            qt_bases = [base for base in cls.__mro__[1:] if is_qt(base)]
            for name, function in list(vars(cls).items()):
                if not name.startswith("__") and isinstance(function, FunctionType) \
                        and any(name in vars(base) for base in qt_bases):
                    yield cls, name, function
