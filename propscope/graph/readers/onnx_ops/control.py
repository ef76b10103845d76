"""Control flow: an If whose condition is known when the file is read is the branch it picks.

The TorchScript exporter writes `x.squeeze(d)` of a tensor whose size it lost as `If(size of axis d == 1,
Squeeze, Identity)` (LocalResponseNorm does so); the shapes in propscope's graph are static, so the condition folds
to a constant and the If is its chosen branch's nodes, read into the main graph. Loop and Scan have no handler:
their subgraph attribute is Missing, which refuses them saying why (`onnx_reader.Reader._attributes`).
"""

from __future__ import annotations

from typing import Any

from .._aten import Unmapped
from ..onnx_reader import SUBGRAPH_OPS, Ctx, Reader, Subgraph, onnx_op


@onnx_op("If")
def if_(r: Reader, ins: list[Any], ctx: Ctx) -> list[Any]:
    cond = r.folded(ins[0]) if ins and ins[0] is not None else None
    if cond is None:
        raise Unmapped("its condition is computed at run time; propscope steps an If only where its condition is "
                       "known when the file is read (export with fixed shapes and no data-dependent branches)")
    if cond.size != 1:
        raise Unmapped(f"its condition holds {cond.size} values where ONNX asks for one")
    which = "then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"
    branch = ctx.attrs.get(which)
    if not isinstance(branch, Subgraph):
        raise Unmapped(f"its condition picks {which}, which the node does not have as a graph")
    return r.inline(branch.graph, ctx)


SUBGRAPH_OPS.add("If")
