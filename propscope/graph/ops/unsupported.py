"""A placeholder for an op a model file uses and propscope cannot run, so that the graph still opens.

It is deliberately NOT in the catalog (the catalog lists what the app supports): `get_op` knows it
by name so that a saved model keeps it, and the debugger stops before the first one and names the
original op. Its output shape is the one the file declared (kept in the `shape` attr).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError, UnsupportedOpError
from .opdef import OpDef

Shape = tuple[int, ...]
NAME = "unsupported"


def _declared(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    shape = attrs.get("shape")
    if shape is None:
        raise ShapeError("an unsupported op needs the output shape its file declared")
    return tuple(int(d) for d in shape)


UNSUPPORTED = OpDef(
    NAME, ("x...",), "out = original_op(x…)  (not supported: propscope cannot run this op)", {},
    _declared, "?", category="unsupported", min_arity=0, default_attrs={"original_op": "?", "shape": None},
    summary="an op from a model file that propscope cannot run; the graph opens, stepping stops before it",
)


def is_unsupported(node: Any) -> bool:
    return node.op.name == NAME


def original_op(node: Any) -> str:
    return str(node.attrs.get("original_op", "?"))


def unsupported_nodes(graph: Any) -> list[Any]:
    return [n for n in graph if n.op.name == NAME]


def unread_unsupported(graph: Any) -> dict[str, str]:
    """The unsupported nodes no output depends on, by name, with their original ops (a `nonzero` of which a forward
    used only the size, which a reader answered with the run's), and the nodes only they read, which go with them."""
    dead: dict[str, str] = {}
    if not any(n.op.name == NAME for n in graph.nodes):  # only a placeholder starts what is unread (a 20,000-op file:
        return dead                                     # 30 ms of looking up every node's users, for nothing)
    outputs = {o.name for o in graph.outputs}
    for node in reversed(graph.nodes):  # users before what they read
        if node.is_leaf or node.name in outputs:
            continue
        users = graph.users(node)
        # an unread placeholder, or a node only those read (an op nothing read before stays, as the file has it)
        if all(u.name in dead for u in users) and (node.op.name == NAME or users):
            dead[node.name] = original_op(node) if node.op.name == NAME else node.op.name
    return dict(reversed(dead.items()))


def unsupported_summary(graph: Any) -> str | None:
    """One message listing the unsupported ops by name, or None when there are none."""
    nodes = unsupported_nodes(graph)
    if not nodes:
        return None
    counts: dict[str, int] = {}
    for n in nodes:
        counts[original_op(n)] = counts.get(original_op(n), 0) + 1
    ops = ", ".join(f"{op} ×{k}" if k > 1 else op for op, k in counts.items())
    why = str(nodes[0].meta.get("reason") or "")
    # an op whose output shape the file leaves out makes no node; the first one after it names it as the cause
    cause = f", which lacks {why}" if why.startswith("an output of unsupported op ") else ""
    return (f"{len(nodes)} node(s) use ops propscope does not support: {ops}; the graph opens, "
            f"but stepping stops before the first one ({nodes[0].name!r}){cause}")


# the reason readers give a placeholder whose own op is supported but whose input an unsupported op should have made
# (graph/readers/_build.py `downstream`; the graph room may not import the readers)
CARRIED_FROM = "an output of unsupported op "


def stop_error(node: Any) -> UnsupportedOpError:
    """What stepping says when it reaches an unsupported node."""
    why = node.meta.get("reason")
    if isinstance(why, str) and why.startswith(CARRIED_FROM):  # the op is fine: what it reads could not be made
        return UnsupportedOpError(f"cannot run node {node.name!r} ({original_op(node)}): it reads {why}; "
                                  "stepping stops here")
    return UnsupportedOpError(
        f"cannot run node {node.name!r}: op {original_op(node)} is not supported by propscope"
        + (f" ({why})" if why else "") + "; stepping stops here"
    )
