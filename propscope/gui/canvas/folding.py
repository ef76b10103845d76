"""Module folding: which nodes the canvas shows as one box, and the graph it then lays out.

No Qt here, so the model is tested headless and its layout can be computed on a worker thread.
Two kinds of fold unit come from the graph itself:

- a *module*: every node whose `meta["module"]` is a path under it (`rnn`, `layers.3.attn`);
- a *repeat*: sibling blocks doing the same ops in the same order, shown as "block × N": numbered
  sibling modules (`layers.0` … `layers.11`) or the time steps of an unrolled recurrent layer
  (the nodes of one module with the same `time` meta).

A closed unit is drawn as one box with its outside edges; an open one as a frame around its nodes.
A unit that values leave and come back into (`loop_out`: ResNet's `relu` module, used twice in each block;
the Linears of an MLP as a repeat with the activation between them outside it) can never fold, whatever else is
folded: its box would feed itself. The layout cannot keep it apart, so it has no frame; the menu and the
breadcrumbs say why it does not fold. Other units fold unless a closed box would then feed them and back
(`close`, `fold_conflicts`).
Big graphs start folded just enough to leave about `TARGET_VISIBLE` things to look at; small ones
(the lessons) start open, so every op can be stepped in view. A box never opens by itself while
stepping: the step inside it lights the box instead (the user opens it with a double-click).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter, methodcaller

from ...graph.ir import Graph
from ...graph.layout import Flow, Layout, find_cycle, layered_layout

MODULE, REPEAT = "module", "repeat"
BOX_PREFIX = "\u229e "  # keys of units start with this, which no node name does (readers clean names)
TARGET_VISIBLE = 60


@dataclass
class Unit:
    key: str
    kind: str  # MODULE or REPEAT
    path: str  # the module path; for a repeat, the path of the module holding the blocks
    title: str
    members: list[str]  # every node inside, nested ones included, in graph order
    parent: str | None = None
    count: int = 1  # blocks in a repeat
    what: str = ""  # "block" or "time step", for a repeat's caption
    ops: int = 0  # members that are ops (not parameters, inputs or constants)
    output: str = ""  # the member whose value leaves the unit (what its box shows)
    depth: int = 0

    @property
    def caption(self) -> str:
        ops = f"{self.ops} op" + ("" if self.ops == 1 else "s")
        if self.kind == REPEAT:
            return f"{self.what} × {self.count} · {ops}"
        return f"module · {ops}"


def is_box_key(key: str) -> bool:
    return key.startswith(BOX_PREFIX)


@dataclass
class ViewEdge:
    src: str
    dst: str
    position: int  # where it enters `dst`, top to bottom
    count: int  # how many entry points `dst` has
    role: str  # the input's role (x, W, b) when `dst` is a node with several inputs


@dataclass
class Folding:
    """The units of one graph and which are closed; `rep(name)` is what the canvas draws for a node."""

    graph: Graph
    units: dict[str, Unit] = field(default_factory=dict)
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)  # node -> enclosing units, outermost first
    closed: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)  # refused when last folded: values would leave and come back
    _loops: dict[str, str | None] = field(default_factory=dict, repr=False)  # `loop_out`, as found

    @classmethod
    def of(cls, graph: Graph, closed: Iterable[str] | None = None) -> Folding:
        """The units of `graph`; `closed` None: folded just enough for a first look (see `TARGET_VISIBLE`)."""
        f = cls(graph)
        if not _has_modules(graph):  # (an ONNX chain): nothing folds
            f.chains = dict.fromkeys(map(attrgetter("name"), graph), ())
            return f
        f._find_units()
        if closed is None:
            f.closed = f._default_closed()
        else:
            f.closed = {k for k in closed if k in f.units}
        f._unblock()
        return f

    def with_graph(self, graph: Graph) -> Folding:
        """The same folds on a rebuilt graph (new batch size, a loss attached): nodes keep their names."""
        return Folding.of(graph, self.closed)

    # -- finding the units -------------------------------------------------------------------
    def _find_units(self) -> None:
        g = self.graph
        order = {n.name: i for i, n in enumerate(g)}
        module = self._modules()
        by_path: dict[str, list[str]] = {}
        for node in g:
            path = module.get(node.name, node.module)
            if not path:
                continue
            parts = path.split(".")
            for k in range(1, len(parts) + 1):
                by_path.setdefault(".".join(parts[:k]), []).append(node.name)
        modules: dict[str, list[str]] = {}
        for path in sorted(by_path, key=lambda p: p.count(".")):
            members = by_path[path]
            parent = _parent_path(path, modules)
            if len(members) < 2 or (parent is not None and len(modules[parent]) == len(members)):
                continue  # a single node needs no box; a module inside another with the same nodes adds nothing
            modules[path] = members
        for path, members in modules.items():
            self.units[BOX_PREFIX + path] = Unit(BOX_PREFIX + path, MODULE, path, path, members)
        self._find_repeats(modules, order)
        for unit in self.units.values():
            unit.members.sort(key=order.__getitem__)
        chains: dict[str, list[str]] = {n.name: [] for n in g}
        for unit in sorted(self.units.values(), key=lambda u: (-len(u.members), u.kind != MODULE)):
            for name in unit.members:
                chains[name].append(unit.key)
        self.chains = {name: tuple(c) for name, c in chains.items()}
        for unit in self.units.values():
            chain = self.chains[unit.members[0]]
            i = chain.index(unit.key)
            unit.parent = chain[i - 1] if i else None
            unit.depth = i
            unit.ops = sum(1 for n in unit.members if not g[n].is_leaf)
            unit.output = self._output_of(unit)

    def _modules(self) -> dict[str, str]:
        """Module paths for ops that have none but lie inside one module: every input made in it and every use
        in it, the innermost module holding them all (an exporter's helper ops, e.g. the slices ONNX's Split
        becomes, lose their scope). Left outside, such an op takes values out of the module and back in, and
        the module could not fold. Also the new paths of leaves whose module has no op (`_move_idle_leaves`)."""
        g = self.graph
        found: dict[str, str] = {}
        for node in g:
            if node.module or node.is_leaf or not node.inputs:
                continue
            around = [found.get(a.name, a.module) for a in node.inputs] + [u.module for u in g.users(node.name)]
            common = _common_module(around)
            if common:
                found[node.name] = common
        self._move_idle_leaves(found)
        return found

    def _move_idle_leaves(self, found: dict[str, str]) -> None:
        """Parameters (and constants) of a module that has no op of its own go to the module of the ops using
        them. An exporter that fuses ops leaves such modules behind: `torch.onnx.export(dynamo=True)` folds a
        Conv's BatchNorm into it and scopes the fused Conv under `bn`, and `conv1` kept only its weights: its
        frame read "conv1 · 0 ops" around two parameters, away from the op they feed."""
        g = self.graph
        with_ops: set[str] = set()  # every module path holding an op, at any depth
        for node in g:
            path = found.get(node.name, node.module)
            if node.is_leaf or not path or path in with_ops:
                continue
            parts = path.split(".")
            with_ops.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
        for node in g:
            if node.is_leaf and node.module and node.module not in with_ops:
                users = [found.get(u.name, u.module) for u in g.users(node.name)]
                found[node.name] = _common_module(users)  # "" (no module) when its users share none

    def _find_repeats(self, modules: dict[str, list[str]], order: dict[str, int]) -> None:
        """Sibling blocks with the same op sequence under one module (or at the top)."""
        g = self.graph
        blocks: dict[str, dict[str, list[str]]] = {}  # parent path -> block label -> members
        for path, members in modules.items():
            parent, _, last = path.rpartition(".")
            if last.isdigit() and (parent in modules or not parent):
                blocks.setdefault(parent, {})[path] = members
        timed: dict[str, dict[str, list[str]]] = {}
        for node in g:
            t = node.meta.get("time")
            if t is not None and node.module in modules:
                timed.setdefault(node.module, {}).setdefault(f"t{t}", []).append(node.name)
        for what, groups in (("block", blocks), ("time step", timed)):
            for parent, named in groups.items():
                by_signature: dict[tuple[str, ...], list[tuple[str, list[str]]]] = {}
                for label, members in named.items():
                    sig = tuple(g[n].op.name for n in sorted(members, key=order.__getitem__))
                    by_signature.setdefault(sig, []).append((label, members))
                for k, same in enumerate(v for v in by_signature.values() if len(v) >= 2):
                    same.sort(key=lambda item: order[item[1][0]])
                    first, last = same[0][0], same[-1][0]
                    end = last.rpartition(".")[2]
                    title = f"{first} … {end}" if what == "block" else f"{parent} {first} … {last}"
                    key = f"{BOX_PREFIX}{parent}#{what}{k}"
                    members = [n for _, m in same for n in m]
                    self.units[key] = Unit(key, REPEAT, parent, title, members, count=len(same), what=what)

    def _output_of(self, unit: Unit) -> str:
        inside = set(unit.members)
        outputs = {o.name for o in self.graph.outputs}
        leaving = [n for n in unit.members
                   if n in outputs or any(u.name not in inside for u in self.graph.users(n))]
        ops = [n for n in leaving if not self.graph[n].is_leaf]
        return (ops or leaving or unit.members)[-1]

    def _default_closed(self) -> set[str]:
        """Everything closed, then the biggest boxes opened while the view stays under `TARGET_VISIBLE`."""
        closed = set(self.units)
        visible = len({self._rep_in(n, closed) for n in self.chains})
        heap = [(-len(u.members), u.key) for u in self.units.values() if u.parent is None]
        heapq.heapify(heap)
        while heap:
            _size, key = heapq.heappop(heap)
            unit = self.units[key]
            children = {self._child_of(n, key) for n in unit.members}
            if visible + len(children) - 1 > TARGET_VISIBLE:
                continue
            closed.discard(key)
            visible += len(children) - 1
            for child in children:
                if child in self.units:
                    heapq.heappush(heap, (-len(self.units[child].members), child))
        return closed

    def _child_of(self, name: str, key: str) -> str:
        chain = self.chains[name]
        i = chain.index(key)
        return chain[i + 1] if i + 1 < len(chain) else name

    # -- what is shown ---------------------------------------------------------------------
    def _rep_in(self, name: str, closed: set[str]) -> str:
        for key in self.chains.get(name, ()):
            if key in closed:
                return key
        return name

    def rep(self, name: str) -> str:
        """The node itself, or the outermost closed unit holding it."""
        return self._rep_in(name, self.closed)

    def is_box(self, key: str) -> bool:
        return key in self.units and key in self.closed

    def visible(self) -> list[str]:
        """What the canvas draws, in graph order of the first member."""
        if not self.closed:
            return [n.name for n in self.graph]
        seen: dict[str, None] = {}
        for node in self.graph:
            seen.setdefault(self.rep(node.name), None)
        return list(seen)

    def frames(self) -> list[Unit]:
        """Open units whose frame is shown (none of their enclosing units is closed), outermost first."""
        shown = []
        for unit in sorted(self.units.values(), key=lambda u: u.depth):
            chain = self.chains[unit.members[0]]
            if unit.key not in self.closed and not any(k in self.closed for k in chain[: chain.index(unit.key)]):
                shown.append(unit)
        return shown

    def edges(self) -> list[ViewEdge]:
        """Edges between what is shown: one per (source, target), internal ones dropped."""
        g = self.graph
        sources: dict[str, list[str]] = {}  # box -> distinct outside sources, in order
        pairs: list[tuple[str, str, int, int, str]] = []
        seen: set[tuple[str, str]] = set()
        for node in g:
            dst = self.rep(node.name)
            count = len(node.inputs)
            for pos, a in enumerate(node.inputs):
                src = self.rep(a.name)
                if src == dst or (src, dst) in seen:
                    continue
                seen.add((src, dst))
                if dst == node.name:
                    pairs.append((src, dst, pos, count, node.op.role(pos) if count > 1 else ""))
                else:
                    sources.setdefault(dst, []).append(src)
                    pairs.append((src, dst, -1, 0, ""))
        out = []
        for src, dst, pos, count, role in pairs:
            if pos < 0:
                pos, count = sources[dst].index(src), len(sources[dst])
            out.append(ViewEdge(src, dst, pos, count, role))
        return out

    def view_graph(self) -> Flow:
        return Flow(self.visible(), [(e.src, e.dst, e.position, e.count) for e in self.edges()])

    def clusters(self) -> dict[str, tuple[str, ...]]:
        """The open units around each shown key, outermost first: what the layout keeps apart as frames."""
        out = {}
        for key in self.visible():
            if key in self.units:
                chain = self.chains[self.units[key].members[0]]
                out[key] = chain[: chain.index(key)]
            else:
                out[key] = self.chains.get(key, ())
        return out

    def layout(self) -> Layout:
        clusters = self.clusters() if self.units else None
        return layered_layout(self.graph if not self.closed else self.view_graph(), clusters=clusters)

    # -- changing the folds ----------------------------------------------------------------
    def close(self, key: str) -> bool:
        """Fold `key` into a box; False (and nothing changed) when values would then leave a box and come back in.

        Asked each time, not refused from `blocked`: a unit blocked while others were folded around it (Swin-T
        opens with `features.3.0.mlp` and its siblings blocked by the closed repeat around them) folds once
        they are open, and a frame that looks foldable must fold. Nor is another box opened to make room: the
        user asked to fold this one, and is told why not (`fold_conflicts`)."""
        if key not in self.units:
            return False
        if key in self.closed:
            return True
        if self.loop_out(key) is not None:
            self.blocked.add(key)
            return False
        self.closed.add(key)
        if find_cycle(self.view_graph()):
            self.closed.discard(key)
            self.blocked.add(key)
            return False
        self.blocked.discard(key)
        return True

    def fold_conflicts(self, key: str) -> list[str]:
        """The closed boxes that keep `key` from folding now: with it folded too, values would go from one of
        them to it and back (none: it folds, or it can never fold, see `loop_out`)."""
        if key not in self.units or key in self.closed or self.loop_out(key) is not None:
            return []
        self.closed.add(key)
        try:
            cycle = find_cycle(self.view_graph())
        finally:
            self.closed.discard(key)
        boxes = {k for edge in cycle or () for k in edge[:2] if k in self.closed}
        return sorted(boxes, key=lambda k: self.units[k].title)

    def open(self, key: str) -> None:
        """Open `key`. Boxes inside it that values would leave and come back into open too: a closed box hides
        such cycles among its children (MobileNetV3's classifier: its two Linear blocks are a repeat with the
        Hardswish between them outside it), and they show when it opens."""
        if key in self.closed:
            self.closed.discard(key)
            self._unblock()

    def toggle(self, key: str) -> bool:
        if key in self.closed:
            self.open(key)
            return True
        return self.close(key)

    def close_all(self) -> None:
        """Every unit folded that can be, tried afresh: what was blocked may fold with everything folded (a unit
        that can never fold, inside a closed box, is hidden with its loop)."""
        self.closed = set(self.units)
        self.blocked.clear()
        self._unblock()

    def open_all(self) -> None:
        self.closed = set()

    def state(self) -> frozenset[str]:
        return frozenset(self.closed)

    def _unblock(self) -> bool:
        """Open boxes that lie on a cycle of the folded graph (values leaving and coming back in)."""
        changed = False
        while self.closed:
            cycle = find_cycle(self.view_graph())
            if not cycle:
                break
            on_cycle = [k for edge in cycle for k in edge[:2] if k in self.closed]
            worst = min(on_cycle, key=lambda k: len(self.units[k].members))
            self.closed.discard(worst)
            self.blocked.add(worst)
            changed = True
        return changed

    def loop_out(self, key: str) -> str | None:
        """An op outside unit `key` that takes a value from it and gives one back to it, or None.

        With one, the unit can never fold, whatever else is folded: its box would feed itself (and an enclosing
        box that holds the op too hides the unit altogether). Only ops between the unit's first and last member
        in graph order can lie on such a path, so a module whose nodes come one after another costs a look at
        its members' users."""
        if key not in self._loops:
            self._loops[key] = self._find_loop_out(self.units[key].members)
        return self._loops[key]

    def _find_loop_out(self, members: list[str]) -> str | None:
        g = self.graph
        inside = set(members)
        last = g[members[-1]].index  # members are in graph order
        seen: set[str] = set()  # outside ops already searched from: none of them leads back in
        for name in members:
            for user in g.users(name):
                if user.name in inside or user.name in seen or user.index > last:
                    continue
                seen.add(user.name)
                stack = [user]
                while stack:
                    for after in g.users(stack.pop().name):
                        if after.name in inside:
                            return user.name
                        if after.name not in seen and after.index < last:
                            seen.add(after.name)
                            stack.append(after)
        return None

    def unit_of(self, name: str) -> Unit | None:
        """The innermost open unit holding node or box `name` (what a double-click on its frame closes)."""
        chain = self.chains.get(name) or (self.chains[self.units[name].members[0]] if name in self.units else ())
        if name in self.units:
            chain = chain[: chain.index(name)]
        open_ = [k for k in chain if k not in self.closed]
        return self.units[open_[-1]] if open_ else None


def _has_modules(graph: Graph) -> bool:
    """Whether any node names a module (`Node.module` not "")."""
    try:
        return not set(map(methodcaller("get", "module", ""), map(attrgetter("meta"), graph))) <= {""}
    except TypeError:  # a module that is not a string: the slow way
        return any(n.module for n in graph)


def _common_module(paths: list[str]) -> str:
    """The innermost module holding every one of `paths` ("" when one is at the top or they share none)."""
    if not paths or "" in paths:
        return ""
    parts = [p.split(".") for p in paths]
    shared = []
    for names in zip(*parts, strict=False):
        if len(set(names)) > 1:
            break
        shared.append(names[0])
    return ".".join(shared)


def _parent_path(path: str, modules: dict[str, list[str]]) -> str | None:
    parts = path.split(".")
    for k in range(len(parts) - 1, 0, -1):
        p = ".".join(parts[:k])
        if p in modules:
            return p
    return None
