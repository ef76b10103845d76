"""propscope as an ONNX backend (`onnx.backend.base.Backend`'s interface), for ONNX's conformance tests.

    >>> rep = NumpyOnnxBackend.prepare(model_proto)
    >>> outputs = rep.run([x])

`prepare` keeps the ModelProto; each `run` reads it through propscope's ONNX reader with the run's
non-float inputs bound (see `propscope.graph.readers.onnx_backend`), then steps the graph forward as
the debugger does (a `Trace`), on the NumPy backend or, selectable, the torch backend. Float models run
in their own precision (float32 stays float32), float64 where the model uses float64.

Any failure is one `OnnxRunError` line naming the operator and the reason; nothing else leaves `run`.
The classes follow `onnx.backend.base.Backend` by duck typing, so importing this module imports no onnx.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..backends.base import Backend
from ..graph.errors import PropscopeError
from ..graph.readers.onnx_backend import (
    OnnxRunError,
    input_names,
    is_plumbing,
    one_line,
    plumbing_key,
    read,
    unsupported_reason,
)
from .trace import Trace

# ONNX TensorProto element types -> NumPy, for casting results to the type the model declares
_ELEM = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
         10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}
_CACHE_LIMIT = 8  # graphs kept per prepared model, one per distinct set of non-float inputs


def _dtype(elem: int, default: Any) -> Any:
    """The NumPy dtype of an ONNX element type; bfloat16 from ml_dtypes (onnx's own dependency)."""
    if elem == 16:
        try:
            import ml_dtypes

            return ml_dtypes.bfloat16
        except ImportError:
            return default
    return _ELEM.get(elem, default)


def make_backend(kind: str, dtype: str) -> Backend:
    if kind == "numpy":
        from ..backends.numpy import NumpyBackend

        return NumpyBackend(dtype)
    if kind == "torch":
        from ..backends.torch import TorchBackend

        return TorchBackend(dtype)
    raise OnnxRunError(f"unknown propscope backend {kind!r} (numpy or torch)")


class PropscopeRep:
    """A prepared model: `run(inputs)` returns its outputs as NumPy arrays, in the model's order."""

    def __init__(self, model: Any, kind: str) -> None:
        self.model, self.kind = model, kind
        self.inputs = input_names(model)
        self.outputs = [(vi.name, vi.type.tensor_type.elem_type) for vi in model.graph.output]
        floats = [vi.type.tensor_type.elem_type for vi in [*model.graph.input, *model.graph.output]]
        self.dtype = "float64" if 11 in floats else "float32"
        self._graphs: dict[str, Any] = {}

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        try:
            return self._run(inputs)
        except OnnxRunError:
            raise
        except PropscopeError as exc:
            raise OnnxRunError(one_line(f"{self._culprit(exc)}{exc}")) from None
        except Exception as exc:  # a bug of ours, reported as one line naming the op rather than a traceback
            raise OnnxRunError(one_line(f"{self._culprit(exc)}{type(exc).__name__}: {exc}")) from None

    def _culprit(self, exc: BaseException) -> str:
        ops = sorted({n.op_type for n in self.model.graph.node})
        return f"{'/'.join(ops[:3])}: " if ops and not str(exc).startswith(tuple(ops)) else ""

    def _run(self, inputs: Any) -> tuple[np.ndarray, ...]:
        values = self._feed(inputs)
        plumbing = {k: v for k, v in values.items() if is_plumbing(v)}
        key = plumbing_key(plumbing)
        model = self._graphs.get(key)
        if model is None:
            model = read(self.model, plumbing)
            reason = unsupported_reason(model)
            if reason:
                raise OnnxRunError(reason)
            if len(self._graphs) >= _CACHE_LIMIT:
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[key] = model
        backend = make_backend(self.kind, self.dtype)
        leaves = {k: backend.asarray(v) for k, v in model.arrays.items()}
        for node in model.graph.inputs:
            if node.name not in values:
                raise OnnxRunError(f"input {node.name!r} was not given")
            leaves[node.name] = backend.asarray(values[node.name])
        trace = Trace(model.graph, backend, leaves)
        trace.compute_through(trace.n_forward - 1)
        results = []
        for (_, elem), node in zip(self.outputs, model.graph.outputs, strict=True):
            value = np.asarray(backend.to_numpy(trace.values[node.name]))
            results.append(value.astype(_dtype(elem, value.dtype), copy=False))
        return tuple(results)

    def _feed(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            return {str(k): np.asarray(v) for k, v in inputs.items()}
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        given = list(inputs)
        if len(given) > len(self.inputs):
            raise OnnxRunError(f"{len(given)} inputs given; the model takes {len(self.inputs)}")
        return {name: np.asarray(v) for name, v in zip(self.inputs, given, strict=False)}


class PropscopeOnnxBackend:
    """`onnx.backend.base.Backend`'s class methods, on propscope's NumPy backend (`TorchOnnxBackend`: torch)."""

    kind: ClassVar[str] = "numpy"

    @classmethod
    def is_compatible(cls, model: Any, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper() == "CPU"

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> PropscopeRep:
        if not cls.supports_device(device):
            raise OnnxRunError(f"propscope's ONNX backend runs on CPU, not {device}")
        return PropscopeRep(model, cls.kind)

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device).run(inputs)

    @classmethod
    def run_node(cls, node: Any, inputs: Sequence[Any], device: str = "CPU", outputs_info: Any = None,
                 **kwargs: Any) -> tuple[np.ndarray, ...]:
        raise OnnxRunError("propscope runs whole models (run_model), not single nodes")


class NumpyOnnxBackend(PropscopeOnnxBackend):
    kind = "numpy"


class TorchOnnxBackend(PropscopeOnnxBackend):
    kind = "torch"
