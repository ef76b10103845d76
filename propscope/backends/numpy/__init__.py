"""The NumPy backend. Importing it loads every kernel family into the table."""

from . import (  # noqa: F401  (each module fills KERNELS)
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
from .backend import NumpyBackend, NumpyProgram
from .kernels import KERNELS

__all__ = ["KERNELS", "NumpyBackend", "NumpyProgram"]
