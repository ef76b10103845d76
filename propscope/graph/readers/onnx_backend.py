"""The graph side of propscope as an ONNX backend: a ModelProto read for one run's inputs.

ONNX runtimes receive every input at run time. propscope is a debugger of float networks: what it
steps is the float data flowing through parameters; integers and booleans (shapes, axes, indices,
class targets, masks) are plumbing that the reader folds at load time. So a model is read once per
distinct set of non-float inputs, those bound as initializers (`bind_plumbing`), the float inputs
staying the graph's inputs. The runner that steps the graph lives in `propscope.debugger.onnx_backend`
(the graph room knows no backend).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import PropscopeError
from ..model import Model
from ..ops.unsupported import original_op, unsupported_nodes

FLOAT_KINDS = "fc"


def is_plumbing(array: np.ndarray) -> bool:
    """Non-float data (integers, booleans): folded at load time rather than stepped."""
    return np.asarray(array).dtype.kind not in FLOAT_KINDS


def input_names(model: Any) -> list[str]:
    """The graph inputs a caller must feed, in order (initializers listed as inputs are not fed)."""
    inits = {i.name for i in model.graph.initializer}
    return [vi.name for vi in model.graph.input if vi.name not in inits]


def plumbing_key(values: Mapping[str, np.ndarray]) -> str:
    """A key for the non-float inputs of a run: the same key reads to the same graph."""
    h = hashlib.sha1()
    for name in sorted(values):
        arr = np.ascontiguousarray(values[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def bind_plumbing(model: Any, values: Mapping[str, np.ndarray]) -> Any:
    """A copy of `model` whose inputs named in `values` are initializers holding those values."""
    from onnx import numpy_helper

    bound = type(model)()
    bound.CopyFrom(model)
    keep = [vi for vi in bound.graph.input if vi.name not in values]
    del bound.graph.input[:]
    bound.graph.input.extend(keep)
    for name, array in values.items():
        bound.graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
    return bound


def read(model: Any, plumbing: Mapping[str, np.ndarray], where: str = "<ModelProto>") -> Model:
    """The propscope Model of `model` with its non-float inputs bound to `plumbing`."""
    from .onnx_reader import open_proto

    return open_proto(bind_plumbing(model, plumbing) if plumbing else model, where)


def unsupported_reason(model: Model) -> str | None:
    """One line naming the first op the reader could not map and why, or None when every op maps."""
    nodes = unsupported_nodes(model.graph)
    if not nodes:
        return None
    node = nodes[0]
    why = node.meta.get("reason") or "no mapping onto the catalog"
    more = f" (and {len(nodes) - 1} more unsupported node(s))" if len(nodes) > 1 else ""
    return f"{original_op(node)}: {one_line(str(why))}{more}"


def one_line(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class OnnxRunError(PropscopeError):
    """A model the ONNX backend cannot run: names the operator and the reason, in one line."""
