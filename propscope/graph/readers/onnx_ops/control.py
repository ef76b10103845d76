"""Control flow: an If whose condition is known when the file is read is the branch it picks.

The TorchScript exporter writes `x.squeeze(d)` of a tensor whose size it lost as `If(size of axis d == 1,
Squeeze, Identity)` (LocalResponseNorm does so); the shapes in propscope's graph are static, so the condition folds
to a constant and the If is its chosen branch's nodes, read into the main graph. Loop and Scan have no handler:
their subgraph attribute is Missing, which refuses them saying why (`onnx_reader.Reader._attributes`).

optimum's merged decoder (`decoder_model_merged.onnx`, every transformers.js text generator) is one If on the input
`use_cache_branch`: the decoder without the past (the first step) or with it. Such an If is read on the branch the
data's value picks (the data reaches the reader as `sizes.reading_at`'s switches); without data, on the branch the
past's length says (an empty past: the first step), said in a warning. The input stays, marked with the value it was
read at (`READ_AT`): data that gives it another value is refused in one line (`graph.model.fit_batch`), not run on
the other branch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from ...model import READ_AT
from .._aten import Unmapped
from ..onnx_reader import SUBGRAPH_OPS, Ctx, Reader, Subgraph, onnx_op


def _input_switch(r: Reader, cond: Any, ctx: Ctx) -> np.ndarray | None:
    """The value an If whose condition is a graph input of one element is read at: the data's, else for optimum's
    merged decoder the past's (true where it holds positions: the step after the first); None for any other If."""
    if not isinstance(cond, Node) or cond.op.name != "input" or int(np.prod(cond.shape)) != 1:
        return None
    given = r.switches.get(cond.name)
    if given is not None:
        value = bool(np.asarray(given).reshape(-1)[0])
    else:
        pasts = [n for n in r.b.graph.inputs if n.name.startswith("past_key_values") and ".encoder." not in n.name]
        if not pasts:
            return None
        length = pasts[0].shape[2] if len(pasts[0].shape) == 4 else int(np.prod(pasts[0].shape))
        value = length > 0
        r.b.warnings.append(
            f"input {cond.name!r} picks the branch of If {ctx.name!r} when the file is read: read as "
            f"{str(value).lower()} ({'the past holds' if value else 'the past is empty:'} {length} position(s)"
            f"{'' if value else ', the first step'}); give {cond.name} in the data to read the other branch")
    decided = cond.meta.get(READ_AT)
    if decided is not None and decided[0] != value:
        raise Unmapped(f"input {cond.name!r} picks two Ifs' branches, read at {decided[0]} for {decided[1]!r}")
    cond.meta[READ_AT] = (value, ctx.name)
    return np.array([value])


@onnx_op("If")
def if_(r: Reader, ins: list[Any], ctx: Ctx) -> list[Any]:
    cond = r.folded(ins[0]) if ins and ins[0] is not None else None
    if cond is None and ins:
        cond = _input_switch(r, ins[0], ctx)
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
