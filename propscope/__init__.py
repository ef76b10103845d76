"""propscope: step through the forward and backward pass of a neural network, one op at a time.

The public API for notebooks and scripts. Importing it loads neither Qt nor torch.

    >>> import propscope
    >>> s = propscope.open_session("xor", seed=0)
    >>> s.run_to_end(); s.grad("W1").shape
    (2, 4)

A model held in Python is traced on the inputs it is called with, and `show` opens the app's window on it:

    >>> s = propscope.open_session(resnet, inputs=images, data={"y": labels}, loss="cross_entropy")
    >>> propscope.show(s)          # returns when the window closes (at once under IPython's `%gui qt`)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .debugger import Session, open_session
    from .graph import EXAMPLES, Graph, Model, Node, load_example

__version__ = "0.1.0"
__all__ = ["EXAMPLES", "Graph", "Model", "Node", "Session", "__version__", "diff", "grads", "load_example",
           "open_session", "show"]

# imported on first use (PEP 562), so that `propscope.console` runs before NumPy and the graph are imported
_LAZY = {"Session": ".debugger", "open_session": ".debugger", "EXAMPLES": ".graph", "Graph": ".graph",
         "Model": ".graph", "Node": ".graph", "load_example": ".graph"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'propscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def diff(a: object, b: object, trace: bool = False, data: object = None, **options: object) -> object:
    """How B differs from A, one row per node: a pandas DataFrame where pandas is installed, else a list of dicts.

    A and B: sessions, `(session, epoch)` pairs, models, or file/example names (`FILE@EPOCH` for a snapshot).
    Columns: name, op, status, param_change, value_change and grad_change (with `trace`), ... See debugger.diff.
    """
    from .debugger.diff import diff as graph_diff

    return graph_diff(a, b, trace=trace, data=data, **options).table()  # type: ignore[arg-type]


def grads(target: object, view: str = "parameters", **session_options: Any) -> object:
    """Where gradients vanish, explode or go NaN, and why: a pandas DataFrame where pandas is installed, else a list
    of dicts. `view`: "parameters" (each parameter's gradient in forward order after one backward pass: ‖∂L/∂w‖,
    RMS, max, ‖∂L/∂w‖/‖w‖, flag), "activations" (‖∂L/∂h‖ at each module output: the gradient through depth) or
    "units" (each activation function's output after the forward pass: mean, std, the share of dead and of
    saturated units).

    TARGET: a Session (its cursor stays), or anything `open_session` takes with its options (an example, a model
    file, a `torch.nn.Module` with `inputs=`, `data=` and `loss=`). See debugger.grad_flow and debugger.unit_health.
    """
    from .debugger.grad_flow import activation_flow, gradient_flow
    from .debugger.unit_health import unit_health

    views: dict[str, Callable[[Session], Any]] = {"parameters": gradient_flow, "activations": activation_flow,
                                                  "units": unit_health}
    if view not in views:
        raise ValueError(f"view {view!r}: one of {', '.join(views)}")
    rows = views[view](_session_of(target, session_options, "grads")).as_dicts()
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame.from_records(rows)


def show(target: object, block: bool | None = None, projector: bool = False,
         size: tuple[int, int] | None = None, **session_options: Any) -> Session:
    """The desktop app's window on TARGET: a Session, or anything `open_session` takes (an example, a model file, a
    `torch.nn.Module` with `inputs=`), with its options. Returns the session the window had when it closed, its
    cursor where it was left; under IPython with Qt's event loop on (`%gui qt`) the window stays open and the session
    is returned at once (`block` decides it otherwise). `size=(1400, 900)` sizes the window; `projector` starts in
    projector mode."""
    from .gui.app import show as show_window

    return show_window(_session_of(target, session_options, "show"), block=block, projector=projector, size=size)


def _session_of(target: object, options: dict[str, Any], caller: str) -> Session:
    """TARGET itself where it is a Session (options are for opening one), else the session open_session makes."""
    from .debugger import Session, open_session

    if isinstance(target, Session):
        if options:
            raise TypeError(f"{caller}() takes session options only with a target to open, not a Session: "
                            f"{', '.join(options)}")
        return target
    return open_session(target, **options)
