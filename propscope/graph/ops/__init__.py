"""The op catalog: the single list of ops the whole app supports.

Each family of ops lives in its own module and adds its rows with `define`; importing this
package loads them all.
"""

from . import activations, attention, conv, core, elementwise, losses, nn, norm, recurrent, reduce, resize, shape  # noqa: F401  (each module fills the catalog)
from .opdef import CATALOG, OpDef, define, get_op

LOSSES = tuple(name for name, op in CATALOG.items() if op.is_loss)

__all__ = ["CATALOG", "LOSSES", "OpDef", "define", "get_op"]
