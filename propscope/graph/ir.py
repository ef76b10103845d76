"""The graph IR: what a network IS, with no values and no gradients.

Like torch.fx, parameters and inputs are nodes (leaves), and the graph is built only
through `Graph.add`, which checks arity and infers the output shape from the op's rule.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import GraphError, ShapeError
from .ops import OpDef, get_op

Shape = tuple[int, ...]


@dataclass(eq=False)
class Node:
    """One value in the graph: a leaf (input, parameter, constant) or the result of an op."""

    name: str
    op: OpDef
    inputs: tuple[Node, ...]
    attrs: Mapping[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    index: int = -1

    @property
    def shape(self) -> Shape:
        return tuple(self.meta["shape"])

    @property
    def is_leaf(self) -> bool:
        return self.op.is_leaf

    @property
    def module(self) -> str:
        """Dotted path of the module this node belongs to ("layer1"), or "" at top level."""
        return str(self.meta.get("module", ""))

    def __repr__(self) -> str:
        args = ", ".join(n.name for n in self.inputs)
        return f"<Node {self.name} = {self.op.name}({args}) {self.shape}>"


# Graph.add runs once per node of every file opened: two small caches keep its checks off the profile
_ARITY: dict[tuple[str, int], tuple[OpDef, bool]] = {}  # (op name, inputs) -> (that op, accepted)
_SHAPES: dict[Shape, Shape] = {}  # a shape -> the same shape with plain ints (the rule may return NumPy ints)
_CACHE_LIMIT = 4096


def _accepts(opdef: OpDef, n: int) -> bool:
    hit = _ARITY.get((opdef.name, n))
    if hit is not None and hit[0] is opdef:
        return hit[1]
    ok = opdef.accepts(n)
    if len(_ARITY) > _CACHE_LIMIT:
        _ARITY.clear()
    _ARITY[(opdef.name, n)] = (opdef, ok)
    return ok


def _ints(shape: Any) -> Shape:
    """`shape` as a tuple of Python ints (a TypeError or ValueError for anything else, as int() raises)."""
    try:
        hit = _SHAPES.get(shape)
    except TypeError:  # a list, say: not hashable
        hit = None
    if hit is not None:
        return hit
    out = tuple(int(d) for d in shape)
    if type(shape) is tuple:
        if len(_SHAPES) > _CACHE_LIMIT:
            _SHAPES.clear()
        _SHAPES[shape] = out
    return out


class Graph:
    """Nodes in topological order; created only through `add`, so the order is valid by construction."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self._nodes: list[Node] = []
        self._by_name: dict[str, Node] = {}
        self._users: dict[str, list[Node]] = {}
        self._ops: list[Node] = []  # the same nodes split once, as added: asked for on every open of a big graph
        self._leaves: list[Node] = []
        self.outputs: list[Node] = []

    # -- building -------------------------------------------------------------------------
    def add(
        self,
        op: str | OpDef,
        *inputs: Node | str,
        name: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        shape: Shape | None = None,
        **meta: Any,
    ) -> Node:
        """Add a node; leaves take `shape`, ops infer it from their inputs."""
        # readers add 10⁴-10⁵ nodes in one go: the common case (nodes of this graph as inputs) skips every
        # lookup and copy it can; names and foreign nodes take `_inputs`, which raises as it should
        opdef = get_op(op) if isinstance(op, str) else op
        by_name = self._by_name
        args: tuple[Node, ...] = inputs  # type: ignore[assignment]  # checked just below
        for a in inputs:
            if type(a) is not Node or by_name.get(a.name) is not a:
                args = self._inputs(inputs, opdef)
                break
        if not _accepts(opdef, len(args)):
            raise GraphError(f"{opdef.name} takes {opdef.arity_text()} input(s), got {len(args)}")
        name = name or self._fresh_name(opdef.name)
        if name in by_name:
            raise GraphError(f"graph {self.name!r} already has a node named {name!r}")
        defaults = opdef.default_attrs
        attrs = dict(defaults, **attrs) if attrs else dict(defaults)
        if opdef.category == "leaf":
            if shape is None:
                raise GraphError(f"leaf {name!r} needs a shape")
            out_shape = _ints(shape)
        else:
            try:
                out_shape = _ints(opdef.infer_shape([a.meta["shape"] for a in args], attrs))
            except ShapeError as exc:
                raise ShapeError(f"{opdef.name} node {name!r}: {exc}") from None
        meta["shape"] = out_shape
        node = Node(name, opdef, args, attrs, meta, len(self._nodes))
        self._nodes.append(node)
        (self._leaves if opdef.category == "leaf" else self._ops).append(node)
        by_name[name] = node
        self._users[name] = []
        users = self._users
        for a in args:
            consumers = users[a.name]
            if node not in consumers:
                consumers.append(node)
        return node

    def _inputs(self, inputs: tuple[Node | str, ...], opdef: OpDef) -> tuple[Node, ...]:
        """The inputs of a new node, names looked up, each checked to be this graph's own node."""
        args = tuple(self[i] if isinstance(i, str) else i for i in inputs)
        for a in args:
            if self._by_name.get(a.name) is not a:
                raise GraphError(f"input {a.name!r} of a new {opdef.name} node is not in graph {self.name!r}")
        return args

    def input(self, name: str, shape: Shape, **meta: Any) -> Node:
        return self.add("input", name=name, shape=shape, **meta)

    def parameter(self, name: str, shape: Shape, **meta: Any) -> Node:
        return self.add("parameter", name=name, shape=shape, **meta)

    def set_outputs(self, *nodes: Node | str) -> None:
        self.outputs = [self[n] if isinstance(n, str) else n for n in nodes]

    def _fresh_name(self, base: str) -> str:
        i = 1
        while f"{base}_{i}" in self._by_name:
            i += 1
        return f"{base}_{i}"

    # -- reading --------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no node named {name!r}") from None

    def users(self, node: Node | str) -> list[Node]:
        """The nodes that consume `node`, each once, in graph order."""
        return list(self._users[node if isinstance(node, str) else node.name])

    @property
    def parameters(self) -> list[Node]:
        return [n for n in self._leaves if n.op.name == "parameter"]

    @property
    def inputs(self) -> list[Node]:
        return [n for n in self._leaves if n.op.name == "input"]

    @property
    def leaves(self) -> list[Node]:
        return list(self._leaves)

    @property
    def ops(self) -> list[Node]:
        return list(self._ops)

    @property
    def output(self) -> Node:
        if not self.outputs:
            raise GraphError(f"graph {self.name!r} has no output")
        return self.outputs[0]

    def to_networkx(self) -> Any:
        """A networkx DiGraph of node names, for layout and path algorithms."""
        import networkx as nx

        g = nx.DiGraph()
        for node in self._nodes:
            g.add_node(node.name)
            for a in node.inputs:
                g.add_edge(a.name, node.name)
        return g

    def copy(self, input_shapes: Mapping[str, Shape] | None = None, name: str | None = None,
             renamed: Mapping[str, str] | None = None, without: Collection[str] = ()) -> Graph:
        """Rebuild the graph (optionally with new leaf shapes, nodes `renamed` old name -> new, and `without` nodes that
        nothing reads: an output taken off); every shape is inferred again."""
        new = Graph(name or self.name)
        shapes = dict(input_shapes or {})
        names = dict(renamed or {})
        for node in self._nodes:
            if node.name in without:
                continue
            meta = {k: v for k, v in node.meta.items() if k != "shape"}
            new.add(
                node.op,
                *(new[names.get(a.name, a.name)] for a in node.inputs),
                name=names.get(node.name, node.name),
                attrs=node.attrs,
                shape=shapes.get(node.name, node.shape) if node.is_leaf else None,
                **meta,
            )
        new.set_outputs(*(names.get(o.name, o.name) for o in self.outputs if o.name not in without))
        return new

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self.ops)} ops, {len(self.leaves)} leaves>"
