"""propscope: step through the forward and backward pass of a neural network, one op at a time.

The public API for notebooks and scripts. Importing it loads neither Qt nor torch.

    >>> import propscope
    >>> s = propscope.open_session("xor", seed=0)
    >>> s.run_to_end(); s.grad("W1").shape
    (2, 4)
"""

from .debugger import Session, open_session
from .graph import EXAMPLES, Graph, Model, Node, load_example

__version__ = "0.1.0"
__all__ = ["EXAMPLES", "Graph", "Model", "Node", "Session", "__version__", "diff", "load_example", "open_session"]


def diff(a: object, b: object, trace: bool = False, data: object = None, **options: object) -> object:
    """How B differs from A, one row per node: a pandas DataFrame where pandas is installed, else a list of dicts.

    A and B: sessions, `(session, epoch)` pairs, models, or file/example names (`FILE@EPOCH` for a snapshot).
    Columns: name, op, status, param_change, value_change and grad_change (with `trace`), ... See debugger.diff.
    """
    from .debugger.diff import diff as graph_diff

    return graph_diff(a, b, trace=trace, data=data, **options).table()  # type: ignore[arg-type]
