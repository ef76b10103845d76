"""How ops RUN: the Backend protocol, the NumPy kernels, the PyTorch backend (lazily), optimizers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import DTYPES, Backend, BackendError, Program
from .numpy import NumpyBackend

BACKENDS = ("numpy", "torch")
TORCH_INSTALL = "pip install 'propscope[torch]' (or pip install torch)"


def get_backend(name: str = "numpy", dtype: str = "float32", device: str = "cpu") -> Backend:
    """A backend by name. torch is imported only when asked for."""
    if name == "numpy":
        if device != "cpu":
            raise BackendError(f"the NumPy backend runs on the CPU only, not {device!r}")
        return NumpyBackend(dtype)
    if name == "torch":
        try:
            from .torch import TorchBackend
        except ImportError:
            raise BackendError(f"the torch backend needs PyTorch: {TORCH_INSTALL}") from None
        return TorchBackend(dtype, device)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def backend_devices(name: str) -> list[str]:
    """Where backend `name` can run here, cpu first; [] when it is not installed (offer it greyed out,
    with TORCH_INSTALL). Asking about torch imports it."""
    if name == "numpy":
        return ["cpu"]
    if name == "torch":
        try:
            from .torch import available_devices
        except ImportError:
            return []
        return available_devices()
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def optimizer_for(backend: Backend, name: str, param_names: Sequence[str], **hparams: Any) -> Any:
    """The optimizer a backend trains with: the real torch.optim class on torch, ours (NumPy) elsewhere.

    Both take the same names and hyperparameters and the same `step(params, grads, out=)` call.
    """
    if backend.name == "torch":
        from .torch.optim import TorchOptimizer

        return TorchOptimizer(name, param_names, **hparams)
    from .optimizers import make_optimizer

    return make_optimizer(name, param_names, **hparams)


__all__ = [
    "BACKENDS", "DTYPES", "TORCH_INSTALL", "Backend", "BackendError", "NumpyBackend", "Program", "backend_devices",
    "get_backend", "optimizer_for",
]
