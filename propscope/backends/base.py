"""The `Backend` protocol: how one op runs forward and how it sends gradients back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..graph.errors import PropscopeError
from ..graph.ir import Graph, Node

DTYPES = ("float32", "float64")


class BackendError(PropscopeError):
    """A backend that cannot be used here (not installed, no such device, unknown dtype)."""


@runtime_checkable
class Backend(Protocol):
    """Runs single nodes. Arrays are the backend's own type; `to_numpy` is called only when someone looks."""

    name: str
    dtype: str
    device: str

    def asarray(self, value: np.ndarray) -> Any:
        """A NumPy array as this backend's array, floats cast to the backend's dtype."""

    def to_numpy(self, value: Any) -> np.ndarray: ...

    def forward(self, node: Node, inputs: Sequence[Any]) -> Any: ...

    def vjp(self, node: Node, inputs: Sequence[Any], output: Any, grad_output: Any) -> list[Any | None]:
        """dL/d(input) for each input, given dL/d(output); None where no gradient flows."""

    def partials(self, node: Node, inputs: Sequence[Any], output: Any) -> list[Any | None] | None:
        """Elementwise local derivatives d(output)/d(input), or None when the op is not elementwise."""

    def ones(self, shape: tuple[int, ...]) -> Any: ...

    def is_finite(self, value: Any) -> bool: ...

    def norm(self, value: Any) -> float: ...

    def compile(self, graph: Graph) -> Program:
        """A fast runner for training: forward, loss and parameter gradients, recording nothing."""


class Program(Protocol):
    def loss_and_grads(
        self, leaves: Mapping[str, Any], wrt: Sequence[str]
    ) -> tuple[Any, dict[str, Any]]: ...

    def predict(self, leaves: Mapping[str, Any]) -> Any: ...


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise BackendError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return dtype
