"""Paint methods that cannot take the process down.

An exception escaping a Python `paint` override is handed to shiboken, and while another Python
override is on the stack (the view's `viewportEvent`, during a repaint), PySide 6.11 can crash
storing it: a bug in one item's paint became a segmentation fault of the whole app. Here the
exception goes to `sys.excepthook` instead (printed, or failing the test under pytest-qt), and the
item is left unpainted for that frame.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., None])


def guarded(paint: F) -> F:
    @functools.wraps(paint)
    def safe(*args: Any, **kwargs: Any) -> None:
        try:
            paint(*args, **kwargs)
        except Exception:
            sys.excepthook(*sys.exc_info())

    return safe  # type: ignore[return-value]


def guarded_answer(default: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`guarded` for overrides Qt asks a question of (`eventFilter`, `viewportEvent`...): on an exception the
    exception goes to `sys.excepthook` and Qt gets `default` (False: the event was not handled here)."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def safe(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception:
                sys.excepthook(*sys.exc_info())
                return default

        return safe

    return wrap
