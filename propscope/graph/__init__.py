"""What a network IS: the IR, the op catalog, examples, data sets, model files."""

from .errors import GraphError, ModelFormatError, PropscopeError, ShapeError, UnsupportedOpError
from .examples import EXAMPLES, load_example
from .ir import Graph, Node
from .model import Model, TrainingDefaults, attach_loss
from .ops import CATALOG, LOSSES, OpDef, get_op

__all__ = [
    "CATALOG", "EXAMPLES", "LOSSES", "Graph", "GraphError", "Model", "ModelFormatError", "Node", "OpDef",
    "PropscopeError", "ShapeError", "TrainingDefaults", "UnsupportedOpError", "attach_loss", "get_op",
    "load_example",
]
