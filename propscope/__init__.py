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
__all__ = ["EXAMPLES", "Graph", "Model", "Node", "Session", "__version__", "load_example", "open_session"]
