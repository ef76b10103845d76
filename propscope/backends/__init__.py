"""How ops RUN: the Backend protocol, the NumPy kernels, the PyTorch backend (lazily), optimizers."""

from __future__ import annotations

from .base import DTYPES, Backend, BackendError, Program
from .numpy import NumpyBackend

BACKENDS = ("numpy", "torch")


def get_backend(name: str = "numpy", dtype: str = "float32", device: str = "cpu") -> Backend:
    """A backend by name. torch is imported only when asked for."""
    if name == "numpy":
        if device != "cpu":
            raise BackendError(f"the NumPy backend runs on the CPU only, not {device!r}")
        return NumpyBackend(dtype)
    if name == "torch":
        try:
            from .torch_backend import TorchBackend
        except ImportError:
            raise BackendError(
                "the torch backend needs PyTorch: pip install 'propscope[torch]' (or pip install torch)"
            ) from None
        return TorchBackend(dtype, device)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "DTYPES", "Backend", "BackendError", "NumpyBackend", "Program", "get_backend"]
