"""The NumPy backend. Importing it loads every kernel family into the table."""

from . import activations, attention, conv, core, elementwise, losses, nn, norm, recurrent, reduce, resize, shape  # noqa: F401  (each module fills KERNELS)
from .backend import NumpyBackend, NumpyProgram
from .kernels import KERNELS

__all__ = ["KERNELS", "NumpyBackend", "NumpyProgram"]
