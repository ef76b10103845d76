"""The op catalog: the single list of ops the whole app supports.

Each family of ops lives in its own module and adds its rows with `define`; importing this
package loads them all.
"""

from . import (  # noqa: F401  (each module fills the catalog)
    activations,
    attention,
    conv,
    conv3d,
    core,
    distance,
    elementwise,
    losses,
    nn,
    norm,
    quantize,
    recurrent,
    reduce,
    resize,
    shape,
)
from .opdef import CATALOG, OpDef, define, get_op

LOSSES = tuple(name for name, op in CATALOG.items() if op.is_loss)

__all__ = ["CATALOG", "LOSSES", "OpDef", "define", "get_op"]
