"""What the torch.export and ONNX readers share: building a Model node by node, safely.

A reader maps each op of the file onto catalog ops through a `Builder`. Whatever cannot be mapped
becomes an `unsupported` node with the shape the file declared, so the graph still opens; the
reason goes into the node's meta and one summary line into `Model.warnings`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError
from ..ir import Graph, Node
from ..model import Model
from ..ops.unsupported import CARRIED_FROM, UNSUPPORTED, unread_unsupported, unsupported_summary
from ._budget import charge, human
from ._failure import first_line

MAX_TENSOR_ELEMENTS = 2**31  # one tensor: refused before anything is allocated
MAX_TENSOR_BYTES = 8 * 2**30
MAX_JSON_BYTES = 256 * 2**20

# Plain value types a file may declare, mapped to NumPy (complex, float8 and friends are refused by name).
NUMPY_DTYPES = frozenset({
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32",
    "uint64", "bool",
})  # bfloat16 has no NumPy type: it is widened to float32


def file_size(path: Path, where: str, limit: int, too_big: str) -> int:
    """The size of a model file, refused when unreadable, empty or over `limit` (`too_big` says why)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelFormatError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise ModelFormatError(f"{where}: the file is empty")
    if size > limit:
        raise ModelFormatError(f"{where}: {size} bytes, {too_big}")
    return size


def read_json(path: Path, limit: int, too_big: str) -> Any:
    """A small JSON file (a checkpoint's config or shard index) as Python values, refused when over `limit` bytes
    (`too_big` says why) or not valid JSON."""
    where = str(path)
    file_size(path, where, limit, too_big)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{where}: not valid JSON ({str(exc)[:120]})") from None


MAX_INDEX_BYTES = 64 << 20
MAX_SHARDS = 512
_SHARD_NAME = re.compile(r"^[\w.\-]{1,200}$")


def checkpoint_files(folder: Path, names: Iterable[str], what: str) -> list[Path]:
    """The files holding a checkpoint folder's weights, by the first of `names` present: one file, or the shards an
    `.index.json` lists (all inside the folder); `what` names the checkpoint in the error when there is none."""
    names = tuple(names)
    for name in names:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return [path]
        where = str(path)
        index = read_json(path, MAX_INDEX_BYTES, "more than a shard index holds")
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise ModelFormatError(f"{where}: no weight_map")
        shards = sorted({str(v) for v in weight_map.values()})
        if len(shards) > MAX_SHARDS or not all(_SHARD_NAME.match(s) for s in shards):
            raise ModelFormatError(f"{where}: its weight_map names {len(shards)} shards, or names outside the folder")
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ModelFormatError(f"{where}: shard {missing[0]} is missing")
        return [folder / s for s in shards]
    raise ModelFormatError(f"{folder}: {what} without weights (looked for {', '.join(names)})")


def charge_built(torch: Any, build: Callable[[], Any], name: str, where: str) -> None:
    """Count a torch module's parameters and buffers against the open's memory budget before they exist: `build()`
    runs first on torch's meta device (no memory), so a config that asks for 10¹² parameters is refused instead of
    allocated; a config the class rejects (inconsistent sizes) is one line naming `name`."""
    try:
        with torch.device("meta"):
            shape_only = build()
    except Exception as exc:
        raise ModelFormatError(f"{where}: {name} cannot be built from this config ({first_line(exc)})") from None
    nbytes = sum(t.numel() * 4 for t in (*shape_only.parameters(), *shape_only.buffers()))  # loaded as float32
    charge(nbytes, f"{name}'s parameters and buffers ({human(nbytes)})", where)


def check_shape(shape: Iterable[Any], what: str, where: str, limit: int = MAX_TENSOR_ELEMENTS) -> tuple[int, ...]:
    """Whole, non-negative sizes whose product is within `limit`, or a ModelFormatError naming them."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ModelFormatError(f"{where}: {what} has a malformed shape {shape!r}") from None
    if any(d < 0 for d in dims) or len(dims) > 16:
        raise ModelFormatError(f"{where}: {what} declares an impossible shape {dims}")
    count = math.prod(dims)
    if count > limit:
        raise ModelFormatError(
            f"{where}: {what} declares shape {dims} ({count} elements), more than propscope will load ({limit})"
        )
    return dims


def from_bytes(data: bytes | bytearray, dtype: str, shape: tuple[int, ...], where: str, what: str) -> np.ndarray:
    """An array from raw little-endian bytes whose length must match the shape exactly (bfloat16 widened). A
    `bytearray` read for this array alone becomes it (writable, no copy); immutable `bytes` are copied."""
    item = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    need = math.prod(shape) * item
    if len(data) != need:
        raise ModelFormatError(f"{where}: {what} declares {shape} {dtype} ({need} bytes) but holds {len(data)} bytes")
    charge(need * (2 if dtype == "bfloat16" else 1), what, where)
    if dtype == "bfloat16":
        wide = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
        return wide.view(np.float32).reshape(shape)
    arr = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    return arr if isinstance(data, bytearray) and arr.dtype.isnative else arr.copy()


MIN_SIDE, MAX_SIDE = 16, 1024  # the image sides an architecture by name is traced on


def architecture_spec(spec: str, pattern: re.Pattern[str], usage: str) -> tuple[str, tuple[int, int] | None]:
    """`LIBRARY:NAME[@H[xW]]` (torchvision's, timm's architectures by name): the name and the image size (None: the
    architecture's own); `usage` says how to write one."""
    found = pattern.match(spec.strip())
    if not found:
        raise ModelFormatError(f"{spec!r}: write {usage}")
    name, h, w = found.groups()
    if h is None:
        return name, None
    size = (int(h), int(w or h))
    if not all(MIN_SIDE <= s <= MAX_SIDE for s in size):
        raise ModelFormatError(f"{spec!r}: image sides between {MIN_SIDE} and {MAX_SIDE} pixels, please")
    return name, size


def module_of(name: str) -> str:
    """`layer1.weight` -> `layer1` (a parameter sits in the module that owns it)."""
    return name.rsplit(".", 1)[0] if "." in name else ""


_SAFE = re.compile(r"[^0-9A-Za-z_.:/\-]+")


MAX_NAME_CHARS = 200  # a graph name from a file: longer ones are cut (Builder.fresh keeps them unique)


def clean_name(name: str) -> str:
    # most names are clean already (every node's is cleaned twice): a cheaper test than the substitution first
    if 0 < len(name) <= MAX_NAME_CHARS and name.isascii() and name.replace(".", "a").isidentifier() \
            and name[0] != "_" and name[-1] != "_":
        return name
    return _SAFE.sub("_", name[: MAX_NAME_CHARS * 4]).strip("_")[:MAX_NAME_CHARS] or "node"


class Builder:
    """A Graph plus its arrays under construction, with unique names and unsupported placeholders."""

    def __init__(self, name: str, where: str) -> None:
        self.graph = Graph(name)
        self.where = where
        self.arrays: dict[str, np.ndarray] = {}
        self.warnings: list[str] = []
        self.reasons: dict[str, str] = {}  # original op -> why it is unsupported (the first reason seen)
        self.suffixes: dict[str, int] = {}  # a name -> where `fresh` looks for its next free `name_i`
        # the state dict's names (a program's parameters and buffers, whose leaves are made where first used): a
        # constant made before (a batch norm's zero bias in `conv.bias`'s module) must not take one
        self.reserved: set[str] = set()

    def fresh(self, name: str, own: bool = False) -> str:
        """`name`, else `name_i` with the smallest i free: the search resumes where the last one for this name
        stopped (a graph never loses a node, so the suffixes below it stay taken), linear over a chain of
        thousands of `relu`s rather than quadratic. A reserved name is free only to its `own` leaf."""
        name = clean_name(name)
        graph, reserved = self.graph, self.reserved
        if name not in graph and (own or name not in reserved):
            return name
        i = self.suffixes.get(name, 1)
        while f"{name}_{i}" in graph or f"{name}_{i}" in reserved:
            i += 1
        self.suffixes[name] = i  # not i + 1: the caller may not use the name it was given
        return f"{name}_{i}"

    def leaf(self, kind: str, name: str, value: np.ndarray, module: str | None = None, own: bool = True,
             **meta: Any) -> Node:
        """A parameter or constant holding `value` (its name kept when free, as a state dict names it; a reserved
        one only when it is its `own`)."""
        value = np.asarray(value)
        name = self.fresh(name, own)
        node = self.graph.add(kind, name=name, shape=value.shape,
                              module=module_of(name) if module is None else module, **meta)
        self.arrays[name] = value
        return node

    def input(self, name: str, shape: tuple[int, ...], **meta: Any) -> Node:
        return self.graph.add("input", name=self.fresh(name), shape=shape, **meta)

    def const(self, value: Any, module: str = "", hint: str = "const", name: str | None = None) -> Node:
        """A constant leaf for a number or array the file wrote inline (the 2 in `x * 2`).

        Marked `inline`: a state dict never holds it, so a state-dict report does not call it missing.
        """
        arr = np.asarray(value)
        if arr.dtype.kind == "b":
            arr = arr.astype(np.float64)
        name = name or (f"{module}.{hint}" if module else hint)
        return self.leaf("constant", name, arr, module=module, own=False, inline=True)

    def op(self, op: str, *inputs: Node, name: str, module: str = "", attrs: Mapping[str, Any] | None = None,
           **meta: Any) -> Node:
        return self.graph.add(op, *inputs, name=self.fresh(name), attrs=attrs, module=module, **meta)

    def unsupported(self, original: str, inputs: Iterable[Node], shape: tuple[int, ...], name: str,
                    module: str = "", reason: str = "") -> Node:
        """A placeholder with the declared output shape, so the rest of the graph still builds."""
        self.reasons.setdefault(original, reason)
        meta: dict[str, Any] = {"module": module, "original_op": original}
        if reason:
            meta["reason"] = reason
        return self.graph.add(UNSUPPORTED, *inputs, name=self.fresh(name),
                              attrs={"original_op": original, "shape": tuple(int(d) for d in shape)}, **meta)

    def model(self, outputs: list[Node], batch: Mapping[str, np.ndarray] | None = None,
              description: str = "") -> Model:
        if not outputs:
            raise ModelFormatError(f"{self.where}: the model has no tensor output")
        self.graph.set_outputs(*outputs)
        warnings = list(self.warnings)
        dead = unread_unsupported(self.graph)
        if dead:  # nothing reads them (a `nonzero` whose size only was used, the run's): stepping need not stop there
            self.graph = self.graph.copy(without=dead)
            named = ", ".join(f"{n} ({op})" for n, op in list(dead.items())[:3]) + (" …" if len(dead) > 3 else "")
            warnings.append(f"{len(dead)} node(s) nothing reads are left out, among them ops propscope cannot run: "
                            f"{named}")
        summary = unsupported_summary(self.graph)
        if summary:
            warnings.insert(0, summary)
        try:
            return Model(self.graph, self.arrays, batch=dict(batch or {}), description=description,
                         warnings=warnings)
        except GraphError as exc:
            raise ModelFormatError(f"{self.where}: {exc}") from None

    # -- fused layers, lowered to steppable ops ----------------------------------------------------
    def recurrent(self, kind: str, xs: list[Node], state: Node, weights: tuple[Node, Node, Node, Node],
                  module: str, prefix: str, reverse: bool = False, nonlinearity: str = "tanh") -> list[Node]:
        """One recurrent layer unrolled: a `{kind}_cell` node per time step; the states in time order.

        `xs` are the inputs per time step; `state` is h (or the LSTM's stacked [h; c]) before the first
        step. A reverse direction runs from the last step to the first, as PyTorch's bidirectional layers.
        """
        order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
        states: dict[int, Node] = {}
        attrs = {"nonlinearity": nonlinearity} if kind == "rnn" else None
        for t in order:
            state = self.op(f"{kind}_cell", xs[t], state, *weights, name=f"{prefix}.t{t}", module=module,
                            attrs=attrs, time=t)
            states[t] = state
        return [states[t] for t in range(len(xs))]

    def attention(self, q: Node, k: Node, v: Node, name: str, module: str, scale: float | None = None,
                  causal: bool = False, mask: Node | None = None) -> Node:
        """Scaled dot-product attention as primitive steps: q kᵀ, scale, mask, softmax, weighted sum of v."""
        ndim = len(k.shape)
        perm = (*range(ndim - 2), ndim - 1, ndim - 2)
        k_t = self.op("transpose", k, name=f"{name}.k_T", module=module, attrs={"axes": perm})
        scores = self.op("matmul", q, k_t, name=f"{name}.scores", module=module)
        factor = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
        scaled = self.op("mul", scores, self.const(np.array(factor), module, "scale"), name=f"{name}.scaled",
                         module=module)
        if causal:
            length, source = q.shape[-2], k.shape[-2]
            fill = np.triu(np.full((length, source), CAUSAL_FILL), k=1)
            scaled = self.op("add", scaled, self.const(fill, module, "causal_mask"), name=f"{name}.masked",
                             module=module)
        if mask is not None:
            scaled = self.op("add", scaled, mask, name=f"{name}.masked", module=module)
        weights = self.op("softmax", scaled, name=f"{name}.weights", module=module, attrs={"axis": -1})
        return self.op("matmul", weights, v, name=name, module=module)


DOWNSTREAM = CARRIED_FROM  # "an output of unsupported op ": stepping says the op itself is fine


def downstream(op: str, reason: str) -> str:
    """Why a value an unsupported op of unknown output shape should have made is missing: the first such op and
    its reason, carried along the chain of ops that then cannot be built either (DINOv2's bicubic Resize, not the
    Shape and Gemm after it, is what the user has to know about)."""
    if reason.startswith(DOWNSTREAM):
        return reason
    return f"{DOWNSTREAM}{op} ({reason})" if reason else f"{DOWNSTREAM}{op}"


# A masked score: not −∞, which would be reported as a non-finite value; e^(−1e9) is exactly 0 all the same.
CAUSAL_FILL = -1e9


def finite_mask(value: Any) -> Any:
    """A constant added to scores with −∞ where attention is masked: the finite fill instead, so the debugger
    does not report the sum as non-finite (softmax gives the same exact zeros). Other values pass unchanged."""
    # −∞ and the dtype's lowest number (transformers fills masks with finfo.min, which overflows to −∞ in float32)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and (value < CAUSAL_FILL).any():
        return np.where(value < CAUSAL_FILL, CAUSAL_FILL, value)
    return value


def additive_mask(mask: np.ndarray) -> np.ndarray:
    """A boolean attention mask (True = may attend) as the additive mask softmax takes."""
    if mask.dtype == np.bool_:
        return np.where(mask, 0.0, CAUSAL_FILL)
    return np.maximum(mask.astype(np.float64), CAUSAL_FILL)  # −∞ entries become the finite fill


def missing_weights_warning(missing: list[str], name: str, kept: str) -> str:
    """The warning for parameters of `name` a checkpoint folder did not fill (`kept`: what they hold instead)."""
    shown = ", ".join(missing[:4]) + ("..." if len(missing) > 4 else "")
    return f"{len(missing)} parameters of {name} are not in the checkpoint and keep their {kept}: {shown}"
