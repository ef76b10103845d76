"""Python overrides of Qt virtuals that cannot take the process down.

Why: PySide 6.11 (shiboken 6.11.3 checked) finds a Python override in `Sbk_GetPyOverride`, which
asks `BindingManager::getOverride` for the function. That hands back a *borrowed* reference (the
class's own entry), yet when `Shiboken::Errors::occurred()` reports an error at that moment the
function is `Py_XDECREF`ed as if it were owned. An error is there whenever an exception escaped
another Python override earlier in the same call from Python (shiboken stores it to re-raise it
when the call returns, `storePythonOverrideErrorOrPrint`). So one exception in, say, a `resizeEvent`
during `show()` costs every override looked up for the first time before `show()` returns one
reference of a function its class still holds; the class's last reference goes at the next such
drop, and a later call of that method (or the garbage collector) runs over freed memory: a
segmentation fault in an unrelated place, seconds or tests later. The exception itself can be lost.

The cure is to let no exception reach shiboken: every Python override Qt calls (event handlers,
`paint`, `eventFilter`, `sizeHint`, a model's `data`...) is wrapped here. The exception goes to
`sys.excepthook` instead (printed, or failing the test under pytest-qt) and Qt gets a harmless
answer. `tests/test_gui_guard.py` checks that every such override in `propscope.gui` is wrapped,
and the test suite's conftest fails the test in which a reference is dropped all the same.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., None])
A = TypeVar("A", bound=Callable[..., Any])


def guarded(paint: F) -> F:
    """For overrides that return nothing (event handlers, `paint`): an exception goes to `sys.excepthook`."""

    @functools.wraps(paint)
    def safe(*args: Any, **kwargs: Any) -> None:
        try:
            paint(*args, **kwargs)
        except Exception:
            sys.excepthook(*sys.exc_info())

    return safe  # type: ignore[return-value]


def guarded_answer(default: Any) -> Callable[[A], A]:
    """`guarded` for overrides Qt asks a question of (`eventFilter`, `viewportEvent`, `sizeHint`, a model's `data`...):
    on an exception the exception goes to `sys.excepthook` and Qt gets `default` (False: the event was not handled
    here; an invalid `QSize`: no size hint; `None`: no data)."""

    def wrap(method: A) -> A:
        @functools.wraps(method)
        def safe(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception:
                sys.excepthook(*sys.exc_info())
                return default

        return safe  # type: ignore[return-value]

    return wrap


def is_guarded(function: Any) -> bool:
    """Whether `function` is one of the wrappers above (what the test of every override looks for)."""
    return getattr(function, "__code__", None) in _SAFE_CODES


_SAFE_CODES = {guarded(lambda: None).__code__, guarded_answer(None)(lambda: None).__code__}
