"""The PyTorch backend: every op's forward in torch, every gradient from autograd.

Importing this package imports torch and loads every kernel family into the table; propscope
imports it only when the torch backend is asked for (`propscope.backends.get_backend`).
"""

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
from .backend import TorchBackend, TorchProgram, available_devices, cuda_unavailable_reason, exact_float32
from .kernels import KERNELS

__all__ = ["KERNELS", "TorchBackend", "TorchProgram", "available_devices", "cuda_unavailable_reason",
           "exact_float32"]
