"""ONNX models (`.onnx`) mapped onto catalog ops, read by propscope's own protobuf reader (`onnx_proto.py`).

Exporters surround the network with shape plumbing (Shape, Gather, Unsqueeze, Concat, Expand,
Constant, ConstantOfShape, Cast...). Every value computable at load time is folded with NumPy, so
the graph shows the network, not the plumbing. Float initializers become parameters named as the
file names them (`fc.weight`); name scopes (`/layer1/Gemm`, or the torch exporter's metadata) give
each node its module. ONNX's GRU, LSTM and RNN are unrolled into PyTorch-layout cells per time step. An If whose
condition folds to a constant (the TorchScript exporter's guard around a squeeze) is the branch it picks, its nodes
read into the main graph; so is optimum's merged decoder's If on its `use_cache_branch` input, at the data's value
(onnx_ops/control.py); Loop, Scan and any other If decided at run time are refused.

Safety: the protobuf reader checks every length against the bytes and charges what it makes to the open's
budget; external data is read only from a plain file beside the model; every tensor's declared size is checked
against its bytes before an array is made. The `onnx` package is used only for its shape inference, where a
file leaves an unsupported op's output shape out, and by ONNX's backend tests (`open_proto`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError, ShapeError
from ..ir import Node
from ..model import Model
from . import onnx_proto
from ._aten import Lazy, Missing, Transposed, Unmapped
from ._budget import charge
from ._build import DOWNSTREAM, Builder, check_shape, clean_name, downstream, file_size, from_bytes
from .sizes import bind_symbol, requested_shapes, requested_switches, sized

SUFFIX = ".onnx"
MAX_FILE_BYTES = 2 * 2**30  # protobuf's own limit
INT64_MAX = 2**63 - 1
# TensorProto.DataType numbers -> our dtype names (strings, complex and float8 are refused by name)
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


RECURRENT = ("GRU", "LSTM", "RNN")
_OP_TYPE = attrgetter("op_type")
# AttributeProto.AttributeType numbers (read without importing onnx per node)
_FLOAT, _INT, _STRING, _TENSOR, _GRAPH, _FLOATS, _INTS, _STRINGS, _TENSORS, _GRAPHS = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
_ABSENT = object()


class Subgraph:
    """A graph attribute of an op whose handler reads it (an If's branch): the GraphProto, unread until chosen."""

    __slots__ = ("graph",)

    def __init__(self, graph: Any) -> None:
        self.graph = graph


def match(path: Path) -> bool:
    return path.suffix.lower() == SUFFIX


# torch's dynamo exporter records in each initializer's value_info what it was in the module's export signature
SIGNATURE_KIND = "pkg.torch.export.graph_signature.InputSpec.kind"


class Init:
    """An initializer: a parameter (floats) or a constant, made a leaf only when a node uses it. `constant`: floats
    the file says are no parameter of the module (a buffer, or a number the exporter lifted: `val_3` for the 3.0 of
    `x ** 3`), which no gradient is taken for or training changes."""

    def __init__(self, name: str, array: np.ndarray, constant: bool = False, source: str | None = None) -> None:
        self.name, self.array = name, array
        self.constant = constant or array.dtype.kind != "f"
        self.node: Node | None = None
        # NhwcConv's (M, kH, kW, C) weight as the parameter in Conv's layout (onnx_ops/conv.py): a node of its own,
        # so that an op reading the initializer as stored never gets the transposed one
        self.as_conv_weight: Node | None = None
        # a MatMul's (in, out) matrix as the parameter in nn.Linear's (out, in) layout (onnx_ops/naming.py)
        self.as_linear_weight: Node | None = None
        # the state-dict name of the one parameter the exporter computed this initializer from (a Linear's weight
        # transposed, the experts' weights, an embedding's rows at the traced positions), where the file records it
        self.source = source
        # a batch norm folded into the convolution this initializer is the weight or bias of (see `folded_norms`)
        self.folded_norm: dict[str, Any] | None = None


def signature_kinds(g: Any) -> dict[str, str]:
    """What torch's dynamo exporter says each initializer was in the module (PARAMETER, BUFFER, CONSTANT_TENSOR),
    by name; {} for a file without that record (another exporter, or an older one), whose float initializers are all
    read as parameters."""
    kinds = {}
    for vi in g.value_info:
        for entry in vi.metadata_props:
            if entry.key == SIGNATURE_KIND:
                kinds[vi.name] = entry.value
    return kinds


# what onnxscript's optimizer says an initializer it computed was folded from (the program's values and leaves)
FOLDED_FROM = "pkg.onnxscript.optimizer.folded_from"
GRAPH_SIGNATURE = "pkg.torch.export.ExportedProgram.graph_signature"
_QUOTED = re.compile(r"'([^']*)'")
_PARAMETER_TARGET = re.compile(r"^\S+: PARAMETER target='([^']*)'", re.MULTILINE)


def folded_sources(g: Any) -> dict[str, set[str]]:
    """The names each initializer the dynamo exporter's optimizer computed was folded from, by initializer."""
    sources = {}
    for vi in g.value_info:
        for entry in vi.metadata_props:
            if entry.key == FOLDED_FROM:
                sources[vi.name] = set(_QUOTED.findall(entry.value))
    return sources


def parameter_names(g: Any, kinds: Mapping[str, str]) -> set[str] | None:
    """The module's parameters as the dynamo exporter's record of the program's signature names them (also those
    the optimizer folded away, which have no initializer of their own); None for a file without that record."""
    names = {name for name, kind in kinds.items() if kind == "PARAMETER"}
    signature = next((e.value for e in getattr(g, "metadata_props", ()) if e.key == GRAPH_SIGNATURE), None)
    if signature is None:
        return names or None
    return names | set(_PARAMETER_TARGET.findall(signature))


_SIGNATURE_ENTRY = re.compile(r"^(\S+): (PARAMETER|BUFFER|CONSTANT_TENSOR) target='([^']*)'", re.MULTILINE)
# the names exporters make up for values they compute (rather than the model's state-dict names)
_GENERATED = re.compile(r"(onnx::.*|val_\d+|_?v\d+|\d+|initializer_\d+)")


def generated(name: str) -> bool:
    """A name an exporter made up (rather than the model's state-dict name)."""
    return bool(_GENERATED.fullmatch(name))


def signature_targets(g: Any) -> dict[str, str]:
    """The program's placeholders (`p_fc_weight`, `b_bn1_running_mean`) -> the module's names (`fc.weight`), as the
    dynamo exporter records its signature; {} without that record."""
    signature = next((e.value for e in getattr(g, "metadata_props", ()) if e.key == GRAPH_SIGNATURE), None)
    return {} if signature is None else {p: t for p, _, t in _SIGNATURE_ENTRY.findall(signature)}


def parameter_source(name: str, sources: Mapping[str, set[str]], parameters: set[str] | None) -> str | None:
    """The state-dict name of the one parameter a computed initializer was folded from (a Linear's weight
    transposed, `val_44` from `q_proj.weight`; an embedding's rows at the positions the export traced), where the
    dynamo exporter's optimizer records it; None for a parameter of the module itself, or no such record."""
    folded = sources.get(name)
    if not folded or parameters is None or name in parameters:
        return None
    found = folded & parameters
    return next(iter(found)) if len(found) == 1 else None


BATCH_NORM_FOLD = "FuseBatchNormIntoConv"
_FX_ARGS = re.compile(r"args = \((.*)\), kwargs")


def folded_norms(g: Any, targets: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The batch norms onnxscript's optimizer folded into the convolution before them (a model exported in eval
    mode): by the Conv's weight and bias initializer, what they were made of. The Conv's metadata names the rule and
    the program's batch norm (`_native_batch_norm_legit_no_training(conv, p_bn1_weight, p_bn1_bias,
    b_bn1_running_mean, b_bn1_running_var, momentum, eps)`); the signature gives those placeholders' names. The
    weight is the convolution's (its name kept) times γ/√(σ² + ε), the bias (b − μ)·γ/√(σ² + ε) + β (b the
    convolution's own bias, or 0)."""
    out: dict[str, dict[str, Any]] = {}
    named = set(targets.values())
    for n in g.node:
        if n.op_type != "Conv" or len(n.input) < 3 or not len(n.metadata_props):
            continue
        props = {e.key: e.value for e in n.metadata_props}
        if BATCH_NORM_FOLD not in props.get("pkg.onnxscript.rewriter.rule_name", ""):
            continue
        found = _FX_ARGS.search(props.get("pkg.torch.onnx.fx_node", ""))
        args = [a.strip().lstrip("%") for a in found.group(1).split(",")] if found else []
        if len(args) != 7 or "batch_norm" not in props.get("pkg.torch.onnx.fx_node", ""):
            continue
        try:
            eps = float(args[6])
        except ValueError:
            continue
        gamma, beta, mean, var = (None if a == "None" else targets.get(a, "?") for a in args[1:5])
        if "?" in (gamma, beta, mean, var) or mean is None or var is None:
            continue
        weight, bias = n.input[1], n.input[2]
        conv = weight.rsplit(".", 1)[0] if "." in weight and not generated(weight) else ""
        norm = mean.rsplit(".", 1)[0]
        record = {"batch_norm": norm, "gamma": gamma, "beta": beta, "mean": mean, "var": var, "eps": eps,
                  "conv_weight": f"{conv}.weight" if conv else "",
                  "conv_bias": f"{conv}.bias" if conv and f"{conv}.bias" in named else ""}
        out[weight] = {**record, "part": "weight"}
        out[bias] = {**record, "part": "bias"}
    return out


def merged_names(g: Any) -> dict[str, str]:
    """The model's own names of the initializers optimum's `merge_decoders` renamed (`transformer.wte.weight_merged_0`:
    each tensor the two decoders share, kept once beside their If and named after the graph, `merged`), by the file's
    name; {} for any other file. A name whose plain form the file also holds keeps its suffix."""
    if not g.name or not any(n.op_type == "If" for n in g.node):
        return {}
    suffix = re.compile(rf"(.+)_{re.escape(g.name)}_\d+")
    names = [init.name for init in g.initializer]
    plain: dict[str, str] = {}
    for name in names:
        found = suffix.fullmatch(name)
        if found is not None and not generated(found.group(1)):
            plain.setdefault(found.group(1), name)
    taken = set(names)
    return {file: own for own, file in plain.items() if own not in taken}


def lifted_constant(kinds: Mapping[str, str], name: str, array: np.ndarray,
                    sources: Mapping[str, set[str]] | None = None, parameters: set[str] | None = None) -> bool:
    """Whether torch's exporter says a float initializer is no parameter: a tensor constant of the module, or a
    number it lifted out of the code (`x ** 3`'s 3.0 as `val_109`: one entry, and no record of its own in a file that
    records its parameters), or a tensor its optimizer folded from buffers and constants alone (the cosines and
    sines of a rotary embedding, made from its `inv_freq` buffer: no parameter among what it was folded from).
    Buffers stay as they were read (the batch norm's running statistics), and so does a weight the exporter's
    optimizer computed (a batch norm folded into a convolution, a Linear's weight transposed: folded from a
    parameter, or no record)."""
    kind = kinds.get(name)
    if kind == "CONSTANT_TENSOR" or (kind is None and bool(kinds) and array.size == 1):
        return True
    folded = (sources or {}).get(name)
    return kind is None and folded is not None and parameters is not None and not folded & parameters


def tensor_array(t: Any, where: str, what: str, folder: Path | None = None) -> np.ndarray:
    """A TensorProto as NumPy, refusing any size that does not match its bytes.

    External data (the torch exporter's default for weights) is read only from a plain file beside the
    model, at an offset and length checked against that file; never from another folder.
    """
    dtype = ONNX_DTYPES.get(int(t.data_type))
    if dtype is None:
        raise ModelFormatError(f"{where}: {what} has ONNX data type {t.data_type}, which propscope cannot use")
    shape = check_shape(t.dims, what, where)
    count = math.prod(shape)
    if getattr(t, "data_location", 0) == 1 or len(getattr(t, "external_data", ())):
        data = _external(t, where, what, folder)
        if dtype == "bool":
            return from_bytes(data, "uint8", shape, where, what).astype(bool)
        arr = from_bytes(data, dtype, shape, where, what)
    elif raw := t.raw_data:  # read once: each read of the field is a copy of all its bytes
        if dtype == "bool":
            return from_bytes(raw, "uint8", shape, where, what).astype(bool)
        arr = from_bytes(raw, dtype, shape, where, what)
    else:
        field = {"float32": t.float_data, "float64": t.double_data, "int64": t.int64_data,
                 "uint32": t.uint64_data, "uint64": t.uint64_data}.get(dtype, t.int32_data)
        charge(count * 8, what, where)
        if len(field) != count:
            raise ModelFormatError(f"{where}: {what} declares {shape} ({count} values) but holds {len(field)}")
        if dtype in ("float16", "bfloat16"):
            bits = np.asarray(field, dtype=np.uint16)
            arr = bits.view(np.float16).astype(np.float32) if dtype == "float16" else \
                (bits.astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.asarray(field, dtype=np.dtype(dtype))
        arr = arr.reshape(shape)
    return arr.astype(np.float32) if arr.dtype == np.float16 else arr


def _external(t: Any, where: str, what: str, folder: Path | None) -> bytearray:
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if folder is None or not location or "\x00" in location or Path(location).is_absolute() \
            or Path(location).name != location or location in (".", ".."):
        raise ModelFormatError(f"{where}: {what} keeps its data in {location[:80]!r}; propscope reads external "
                               "data only from a file in the model's own folder")
    file = folder / location
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        size = file.stat().st_size
    except ValueError:
        raise ModelFormatError(f"{where}: {what} has a malformed external data offset or length") from None
    except OSError:
        raise ModelFormatError(f"{where}: {what} keeps its data in {location[:80]!r}, which is missing beside the "
                               "model") from None
    if not file.is_file():
        raise ModelFormatError(f"{where}: {what} keeps its data in {location[:80]!r}, which is not a plain file")
    if length < 0:
        length = size - offset
    if offset < 0 or offset + length > size:
        raise ModelFormatError(f"{where}: {what} claims bytes {offset}..{offset + length} of {location}, "
                               f"which holds {size}; the data file may be truncated")
    charge(length, what, where)
    data = bytearray(length)  # this tensor's own: the array is a view of it, not a copy (`from_bytes`)
    with file.open("rb") as fh:
        fh.seek(offset)
        got = fh.readinto(data)
    if got != length:
        raise ModelFormatError(f"{where}: {what} claims {length} bytes of {location} at {offset}; {got} were there")
    return data


def _dims(value_info: Any) -> tuple[int | None, ...] | None:
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim)


_PLAIN_STRINGS = re.compile(r"\[(?:'[^'\\\n]*'(?:, '[^'\\\n]*')*)?\]")  # ['', 'layer1', 'layer1.0']
_PLAIN_STRING = re.compile(r"'([^'\\\n]*)'")


def _string_list(text: str) -> Any:
    """A Python list literal of strings, as the torch exporter writes module scopes: the common plain form read
    by a pattern (a node each, and `ast` is a slow import), anything else by `ast.literal_eval`; None if not one."""
    if _PLAIN_STRINGS.fullmatch(text):
        return _PLAIN_STRING.findall(text)
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _module(node: Any, name: str) -> str:
    """The module path: the torch exporter's name_scopes metadata, else the scope in `/layer1/fc/Gemm`."""
    for prop in node.metadata_props if len(node.metadata_props) else ():  # len first: iterating costs more
        if prop.key == "pkg.torch.onnx.name_scopes" and len(prop.value) < 4000:
            scopes = _string_list(prop.value)
            if scopes is None:
                break
            if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes):
                return _scope_path([s for s in scopes[:-1] if s])
    return _name_scope(name)


def _name_scope(name: str) -> str:
    """The module path in a node name such as `/layer1/fc/Gemm` (`layer1.fc`), else "". onnxruntime's fusions
    prefix the node they replace: `NhwcConv_0-/m/conv_in/Conv` is in `m.conv_in`."""
    if "-/" in name and not name.startswith("/"):
        name = name[name.index("-/") + 1:]
    if name.startswith("/") and name.count("/") >= 2:
        return _joined([p for p in name.split("/")[1:-1] if p])
    return ""


def _scope_path(scopes: list[str]) -> str:
    """The module path from name scopes: newer torch lists each scope's full path (`encoder`,
    `encoder.layers.0`), older ones each module's own name (`encoder`, `layers.0`)."""
    if not scopes:
        return ""
    if all(scopes[i + 1].startswith(f"{scopes[i]}.") for i in range(len(scopes) - 1)):
        return scopes[-1]
    return _joined(scopes)


def _joined(scopes: list[str]) -> str:
    """Each module's scope joined into one path. The TorchScript exporter names a Sequential's child after it
    (`/layer1/layer1.0/conv1`, `/features/features.0/features.0.0`): that child is `0` of `layer1`, not a module
    `layer1.0` inside it (a naive join gave `layer1.layer1.0.conv1.weight` for ResNet's `layer1.0.conv1.weight`)."""
    path: list[str] = []
    for i, scope in enumerate(scopes):
        before = scopes[i - 1] if i else ""
        path.append(scope[len(before) + 1:] if before and scope.startswith(f"{before}.") else scope)
    return ".".join(path)


def _node_name(name: str, outputs: list[str], op_type: str, index: int) -> str:
    if name:
        return clean_name(name.strip("/").replace("/", "."))
    out = next((o for o in outputs if o), "")
    return clean_name(out) if out else f"{op_type}_{index}"


class Ctx:
    """One ONNX node as its handler sees it. `shapes` (each output's declared shape, None where unknown) is
    worked out on first use: where the file does not declare one it asks ONNX's shape inference, which a
    node whose handler never asks (most of them) must not pay for."""

    __slots__ = ("_reader", "_shapes", "attrs", "module", "name", "op", "opset", "outputs")

    def __init__(self, op: str, name: str, module: str, shapes: list[tuple[int, ...] | None] | None,
                 attrs: dict[str, Any], opset: int, outputs: tuple[str, ...] = (),
                 reader: Reader | None = None) -> None:
        self.op, self.name, self.module, self.attrs, self.opset = op, name, module, attrs, opset
        self.outputs = outputs
        self._shapes, self._reader = shapes, reader

    @property
    def shapes(self) -> list[tuple[int, ...] | None]:
        if self._shapes is None:
            reader = self._reader
            self._shapes = [reader.declared(o) if o and reader is not None else None for o in self.outputs]
        return self._shapes


HANDLERS: dict[str, Callable[[Reader, list[Any], Ctx], Any]] = {}
# ONNX ops whose handler, given one computed value and no attributes, makes exactly one catalog op of it
# (`Relu` -> relu): `_op` makes that node itself, without the handler's context (most nodes of a big graph).
# Keyed by op, with the handler the shortcut stands for: it applies only while that handler is registered.
CATALOG_UNARY: dict[str, tuple[Callable[..., Any], str]] = {}
# handler keys whose handler reads graph attributes (as Subgraph); any other op's graph attribute is Missing
SUBGRAPH_OPS: set[str] = set()


def onnx_op(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return register


class Reader:
    def __init__(self, model: Any, where: str, name: str) -> None:
        self.model, self.where = model, where
        self.graph = model.graph
        self.opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.b = Builder(name, where)
        self.env: dict[str, Any] = {}
        self.shapes: dict[str, tuple[int | None, ...]] = {}  # as the file declares them
        self.inferred_shapes: dict[str, tuple[int | None, ...]] = {}  # ONNX's inference, for what it does not
        self.inferred = False
        self.gru_count: dict[str, int] = {}
        # (domain, op type) -> (key, handler, the catalog op of a CATALOG_UNARY shortcut or None)
        self._handlers: dict[tuple[str, str], tuple[str, Any, str | None]] = {}
        self.folder: Path | None = None
        self.fold_weights = False
        self.serialized: bytes | None = None  # the file's bytes, for ONNX's shape inference (read by onnx_proto)
        self.refused: dict[str, int] = {}  # each op the reader could not map (not the ops downstream), how often
        self.input_shapes: dict[str, tuple[int, ...]] = {}  # the data's, by input name: symbolic sizes follow them
        self.switches: dict[str, Any] = {}  # the data's one-element arrays, by input name: an If on one picks by them
        # inputs whose data disagrees on a dynamic dimension the file names alike: optimum's merged decoder declares
        # its attention mask with the tokens' length (the decoder's), which with a past is past + tokens long.
        # onnxruntime runs such data; so does propscope where the graph reads at the data's sizes, else this is said
        self.disagreements: list[str] = []
        self.taken_as_one: list[str] = []  # inputs whose symbolic sizes no data gave, read as 1
        self.first_stop: str | None = None  # the first op the reader could not map, and why
        self.symbolic: dict[str, tuple[str | None, ...]] = {}  # each input's dim_param per axis (None: a fixed size)
        self.folded_norm_count = 0  # batch norms the exporter folded into convolutions (`folded_norms`)
        # the TorchScript exporter's file (no record of the program's signature): in eval mode it folds a batch norm
        # into the convolution before it and names the result `onnx::Conv_N`, recording nothing (`export_folded`)
        self.scripted_export = False
        self.export_folded_count = 0
        self.training_dropouts = 0  # Dropouts in training mode (onnx_ops/nn.py), said once
        # the module's parameters as the dynamo exporter's signature names them (None without that record), and the
        # other names of a tied one the file holds once (`tied`): GPT-2's token table, kept as `lm_head.weight`
        self.signature_parameters: set[str] | None = None
        self.kinds: dict[str, str] = {}  # what each initializer was in the module, where recorded (signature_kinds)
        self.aliases: dict[str, str] = {}
        self._uses: dict[str, int] | None = None  # how many nodes (and graph outputs) read each value: `uses`
        # the float matrices the file names as the model's, by shape, made on first use (naming.tied_copy)
        self.named_matrices: dict[tuple[int, ...], list[Init]] | None = None

    # -- values ------------------------------------------------------------------------------------
    def node(self, value: Any, ctx: Ctx, kind: str = "parameter", hint: str = "const") -> Node:
        if isinstance(value, Node):
            return value
        if isinstance(value, Init):
            if value.node is None:
                if value.as_linear_weight is not None:  # also read as stored: the parameter, transposed back
                    weight = value.as_linear_weight
                    value.node = self.b.op("transpose", weight, name=f"{weight.name}.T", module=weight.module,
                                           attrs={"axes": (1, 0)})
                    return value.node
                if value.folded_norm is not None and not value.constant:
                    value.node = self._folded_norm_leaf(value, kind)
                    return value.node
                if value.source is not None and not value.constant:
                    value.node = self.shared(value, ctx, transposed=False) or self.b.leaf(
                        kind, clean_name(value.source), value.array, module=_param_module(value.source, ctx.module),
                        own=False, file_name=value.name, folded_from=value.source)
                    return value.node
                leaf = "constant" if value.constant else kind
                # a constant the exporter made (`val_98`, `scalar_tensor_default`) is no module's buffer: a state
                # dict is not asked for it
                lifted = {"inline": True} if leaf == "constant" and (generated(value.name) or (
                    self.kinds and self.kinds.get(value.name) != "BUFFER")) else {}
                value.node = self.b.leaf(leaf, clean_name(value.name), value.array,
                                         module=_param_module(value.name, ctx.module), **lifted)
            return value.node
        if isinstance(value, Lazy):
            return self.node(value.get(), ctx, kind, hint)
        if isinstance(value, Transposed):
            if value.node is None:
                value.node = self.b.op("transpose", value.leaf, name=f"{value.leaf.name}.T", module=value.leaf.module,
                                       attrs={"axes": (1, 0)})
            return value.node
        if isinstance(value, Missing):
            raise Unmapped(value.reason)
        if isinstance(value, np.ndarray):
            return self.b.const(value, ctx.module, hint, name=f"{ctx.name}.{hint}")
        raise Unmapped(f"a missing input ({type(value).__name__})")

    def shared(self, value: Init, ctx: Ctx, transposed: bool) -> Node | None:
        """The leaf of the parameter `value` was computed from, where the file holds that parameter too and `value`
        is its copy (transposed, where `transposed`): GPT-2's output layer reads its token embedding, tied, as the
        (in, out) matrix `val_155` beside the table `lm_head.weight`. One leaf then, whose gradient sums both uses
        as torch's does; else None."""
        other = self.env.get(value.source) if value.source is not None else None
        if not isinstance(other, Init) or other is value or other.constant or other.array.ndim != value.array.ndim:
            return None
        held = other.array.T if transposed else other.array
        if held.shape != value.array.shape or not np.array_equal(held, value.array):
            return None
        return self.node(other, Ctx("initializer", other.name, "", [], {}, self.opset))

    def _folded_norm_leaf(self, value: Init, kind: str) -> Node:
        """A convolution's weight or bias with a batch norm folded in: named as the convolution's (`conv1.weight`,
        and `conv1.bias` for the bias the fold made, `conv1.weight_bias` in the file), marked with what it holds;
        a state dict loads into it folded the same way (state_dict.py)."""
        record = dict(value.folded_norm or {})
        conv = record["conv_weight"].rsplit(".", 1)[0] if record["conv_weight"] else ""
        if record["part"] == "weight":
            name = record["conv_weight"] or value.name
            holds = f"{name} · γ/√(σ² + ε) of {record['batch_norm']} (folded at export)"
        else:
            name = record["conv_bias"] or (f"{conv}.bias" if conv else value.name)
            holds = f"{record['batch_norm']}'s β − μ·γ/√(σ² + ε)" + (f" + {record['conv_bias']}·γ/√(σ² + ε)"
                                                                        if record["conv_bias"] else "") + \
                " (folded at export)"
        self.folded_norm_count += record["part"] == "weight"
        return self.b.leaf(kind, clean_name(name), value.array, module=_param_module(name, conv), own=False,
                           file_name=value.name, folded_norm=record, holds=holds)

    def tied(self, table: Node, module: str) -> None:
        """`module` reads parameter `table` as its own weight: where the signature names `module.weight` and the
        file holds no such initializer (the exporter kept the tied tensor once, under its other name), a state
        dict's `module.weight` is that table (`Model.aliases`)."""
        own = f"{module}.weight"
        if module and own != table.name and self.signature_parameters and own in self.signature_parameters \
                and own not in self.env and table.op.name == "parameter":
            self.aliases.setdefault(own, table.name)

    def uses(self, value: str) -> int:
        """How many times the graph's nodes (those of subgraphs too) and outputs read `value`: counted on first
        use only (a big graph's protobuf fields are slow to walk, and most files never ask)."""
        if self._uses is None:
            counts: dict[str, int] = {}
            graphs = [self.graph]
            while graphs:
                g = graphs.pop()
                for n in g.node:
                    for i in n.input[:]:
                        counts[i] = counts.get(i, 0) + 1
                    for a in n.attribute:  # If, Loop and Scan bodies read the outer graph's values by name
                        graphs.extend([a.g] if a.HasField("g") else a.graphs)
            for o in self.graph.output:
                counts[o.name] = counts.get(o.name, 0) + 1
            self._uses = counts
        return self._uses.get(value, 0)

    def mark_export_folded(self, weight: Node, bias: Node, conv: str) -> None:
        """Mark a convolution's weight and bias as the TorchScript exporter's fold of a batch norm into it, where
        that is what they can be: both named `onnx::Conv_N` in that exporter's file. The batch norm is not named in
        the file; a state dict is matched to it by its values when it loads (state_dict.py)."""
        if not self.scripted_export or weight.op.name != "parameter" or bias.op.name != "parameter" \
                or "export_folded" in weight.meta \
                or not all(generated(str(n.meta.get("file_name", ""))) for n in (weight, bias)):
            return
        weight.meta["export_folded"] = {"conv": conv, "part": "weight", "bias": bias.name}
        bias.meta["export_folded"] = {"conv": conv, "part": "bias", "weight": weight.name}
        weight.meta["holds"] = f"{conv}.weight as the exporter computed it (a batch norm after it folded in: " \
            "W·γ/√(σ² + ε))"
        bias.meta["holds"] = f"{conv}'s bias as the exporter computed it (a batch norm after it folded in: " \
            "(b − μ)·γ/√(σ² + ε) + β)"
        self.export_folded_count += 1

    @staticmethod
    def const(value: Any) -> bool:
        return isinstance(value, np.ndarray)

    def folded(self, value: Any) -> np.ndarray | None:
        """A value known at load time: constants and integer initializers (shapes, indices), else None.

        Float initializers are parameters and stay nodes, except in the plumbing that only rearranges
        weights for a recurrent layer (`fold_weights`): that is evaluated, and the layer's own cells
        get parameters in PyTorch's layout.
        """
        if isinstance(value, np.ndarray):
            return value
        if isinstance(value, Init) and (value.constant or self.fold_weights):
            return value.array
        return None

    def _weight_plumbing(self) -> set[int]:
        """The nodes that compute recurrent weights from initializers alone (exporters reorder gates so)."""
        if {*map(_OP_TYPE, self.graph.node)}.isdisjoint(RECURRENT):  # most graphs (a C-level pass over them)
            return set()
        made_by: dict[str, int] = {}
        constant: set[str] = {i.name for i in self.graph.initializer}
        for i, n in enumerate(self.graph.node):
            if all(not x or x in constant for x in n.input) and not any(
                    a.type in (5, 10) for a in n.attribute):  # no subgraphs
                constant.update(o for o in n.output if o)
            for o in n.output:
                made_by[o] = i
        wanted: set[int] = set()
        stack = [x for n in self.graph.node if n.op_type in RECURRENT for x in n.input[1:4] if x]
        while stack:
            name = stack.pop()
            index = made_by.get(name)
            if index is None or index in wanted or name not in constant:
                continue
            wanted.add(index)
            stack.extend(x for x in self.graph.node[index].input if x)
        return wanted

    def shape(self, value: Any) -> tuple[int, ...]:
        if isinstance(value, Node):
            return value.shape
        if isinstance(value, Init):
            return value.array.shape
        if isinstance(value, np.ndarray):
            return value.shape
        if isinstance(value, Transposed):
            return value.leaf.shape[::-1]
        if isinstance(value, Lazy):
            return self.shape(value.get())
        if isinstance(value, Missing):  # what is missing, and why (the op that made no output)
            raise Unmapped(value.reason)
        raise Unmapped(f"no shape for {type(value).__name__}")

    def declared(self, name: str) -> tuple[int, ...] | None:
        """The shape of value `name` as the file declares it, else as ONNX's shape inference finds it."""
        dims = self.shapes.get(name)
        if dims is None:
            if not self.inferred:
                self._infer()
            dims = self.inferred_shapes.get(name)
        if dims is None or None in dims:
            return None
        return check_shape(dims, f"value {name!r}", self.where)

    def file_declared(self, name: str) -> tuple[int, ...] | None:
        """The shape of value `name` as the file declares it (no inference), None where it does not."""
        dims = self.shapes.get(name)
        if dims is None or None in dims:
            return None
        return check_shape(dims, f"value {name!r}", self.where)

    def _infer(self) -> None:
        """ONNX's own shape inference, only when a placeholder needs a shape the file does not declare."""
        self.inferred = True
        try:
            import onnx

            model = self.model if self.serialized is None else onnx.load_from_string(self.serialized)
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # inference is a convenience (and onnx optional): without it the placeholder has no shape
            return
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            dims = _dims(vi)
            if dims is not None and vi.name not in self.shapes:
                self.inferred_shapes[vi.name] = dims

    # -- the graph ---------------------------------------------------------------------------------
    def read(self) -> Model:
        g = self.graph
        for vi in list(g.value_info) + list(g.output) + list(g.input):
            dims = _dims(vi)
            if dims is not None:
                self.shapes[vi.name] = dims
        kinds = signature_kinds(g)
        sources, parameters = folded_sources(g), parameter_names(g, kinds)
        self.signature_parameters, self.kinds = parameters, kinds
        self.scripted_export = self.model.producer_name == "pytorch" and not any(
            e.key == GRAPH_SIGNATURE for e in getattr(g, "metadata_props", ()))
        norms = folded_norms(g, signature_targets(g)) if parameters else {}
        reserved = self.b.reserved  # the file's own names: a name made for a computed weight never takes one
        merged = merged_names(g)
        for i, init in enumerate(g.initializer):
            name = init.name or f"initializer_{i}"
            array = tensor_array(init, self.where, f"initializer {name!r}", self.folder)
            self.env[name] = value = Init(merged.get(name, name), array,
                                          constant=lifted_constant(kinds, name, array, sources, parameters),
                                          source=parameter_source(name, sources, parameters) if sources else None)
            value.folded_norm = norms.get(name)
            if not generated(name) and value.source is None and value.folded_norm is None:
                reserved.add(clean_name(value.name))
        bound: dict[str, tuple[int, str, int]] = {}  # each dim_param: its size, and the input and axis it came from
        for vi in g.input:
            if vi.name in self.env:
                continue  # an initializer listed as an input too (older exporters)
            dims = _dims(vi)
            if dims is None:
                raise ModelFormatError(f"{self.where}: input {vi.name!r} is not a tensor with a shape")
            shape = check_shape(self._input_sizes(vi, dims, bound), f"input {vi.name!r}", self.where)
            elem = vi.type.tensor_type.elem_type
            self.env[vi.name] = self.b.input(vi.name, shape, dtype=ONNX_DTYPES.get(elem, "float32"))
            self.shapes[vi.name] = shape
        plumbing = self._weight_plumbing()
        if plumbing:
            for i, n in enumerate(g.node):
                self.fold_weights = i in plumbing
                self._op(n, i)
            self.fold_weights = False
        else:
            for i, n in enumerate(g.node):
                self._op(n, i)
        outputs = []
        for vi in g.output:
            if vi.name not in self.env:
                raise ModelFormatError(f"{self.where}: output {vi.name!r} is not produced by any node")
            value = self.env[vi.name]
            try:
                outputs.append(self.node(value, Ctx("output", vi.name, "", [], {}, self.opset), hint=vi.name))
            except Unmapped as exc:
                if self.disagreements:
                    raise ShapeError(self.disagreements[0]) from None
                if self.taken_as_one and self.first_stop is not None:  # the sizes of 1 are the likelier cause
                    raise ModelFormatError(self._sizes_needed()) from None
                raise ModelFormatError(f"{self.where}: output {vi.name!r} cannot be built ({exc})") from None
            if outputs[-1].name != vi.name:  # the node is named by its module (m.Squeeze); the file names the output
                outputs[-1].meta.setdefault("returns", clean_name(vi.name))
        producer = f"{self.model.producer_name} {self.model.producer_version}".strip() or "an unknown producer"
        description = f"ONNX model (opset {self.opset}, from {producer})"
        if bound and self.input_shapes:
            description += "; symbolic sizes " + ", ".join(f"{p} = {v}" for p, (v, _, _) in bound.items()) + \
                " (the data's)"
        if self.folded_norm_count:
            self.b.warnings.append(
                f"{self.folded_norm_count} batch norm(s) are folded into the convolution before each (the exporter's "
                "optimizer does so for a model in eval mode): such a convolution's weight and bias hold the folded "
                "values and get their gradients, not the module's own; export with optimize=False to step the batch "
                "norms, or load a state dict, which is folded the same way")
        if self.export_folded_count:
            self.b.warnings.append(
                f"{self.export_folded_count} convolution(s) have a weight and bias the exporter computed "
                "(`onnx::Conv_N`: in eval mode the TorchScript exporter folds the batch norm after a convolution "
                "into it, recording nothing): they hold the folded values and get their gradients, and a state dict "
                "loads into them only where its values for them are the file's; export with "
                "training=torch.onnx.TrainingMode.PRESERVE to step the batch norms and load any weights")
        model = self.b.model(outputs, None, description)
        if self.disagreements:
            if any(n.op.name == "unsupported" for n in model.graph):
                raise ShapeError(self.disagreements[0])
            model.warnings.append(f"{self.disagreements[0].split(', but')[0]}, which the data gives other sizes "
                                  "(onnxruntime runs such data too): read at the data's sizes")
        if self.aliases:
            model.aliases.update({other: kept for other, kept in self.aliases.items() if kept in model.arrays})
        _name_refused_ops(model, self.refused)
        return model

    def _input_sizes(self, vi: Any, dims: tuple[int | None, ...],
                     bound: dict[str, tuple[int, str, int]]) -> tuple[int, ...]:
        """An input's sizes: each symbolic one (a `dim_param`, or no size at all) the data's where `input_shapes`
        gives it (inputs that share a dim_param must agree), else 1; the sizes the file fixes stay."""
        if None not in dims:
            return tuple(int(d) for d in dims)  # type: ignore[arg-type]  # none is None
        inputs = [i for i in self.graph.input if not isinstance(self.env.get(i.name), Init)]  # not initializers
        given = self.input_shapes.get(vi.name)
        if given is None and len(inputs) == 1:
            given = self.input_shapes.get("x")  # `x` always names the single input
        given = given if given is not None and len(given) == len(dims) else None
        params = tuple(None if d is not None else (p.dim_param or f"{vi.name}[{axis}]")
                       for axis, (d, p) in enumerate(zip(dims, vi.type.tensor_type.shape.dim, strict=True)))
        self.symbolic[vi.name] = params
        sizes = []
        for axis, (d, param) in enumerate(zip(dims, params, strict=True)):
            if param is None:
                sizes.append(int(d))  # type: ignore[arg-type]  # a fixed size
                continue
            size = int(given[axis]) if given is not None else 1
            try:
                bind_symbol(bound, param, size, vi.name, axis)
            except ShapeError as exc:  # said if the graph does not read at these sizes (see `read`)
                self.disagreements.append(str(exc))
            sizes.append(size)
        if given is None:
            self.taken_as_one.append(vi.name)
            said = ", ".join(f"{p} = 1" for p in params if p is not None)
            self.b.warnings.append(f"input {vi.name!r} has symbolic sizes, taken as 1 here ({said}: shape "
                                   f"{tuple(sizes)}); pass --data to run it at the data's sizes")
        return tuple(sizes)

    def _sizes_needed(self) -> str:
        """One line for a file that cannot be read with its symbolic sizes at 1 (no data gave them): which inputs,
        their dimensions' names, and the first op that could not take them (a ViT's patch convolution asked for 3
        channels and got 1)."""
        named = []
        for name in self.taken_as_one[:3]:
            dims = ", ".join(p or "?" for p in self.symbolic.get(name, ()))
            named.append(f"{name!r} ({dims})")
        more = f" and {len(self.taken_as_one) - 3} more" if len(self.taken_as_one) > 3 else ""
        return (f"{self.where}: input {', '.join(named)}{more} has symbolic sizes, read as 1 without data: there "
                f"{self.first_stop}; give data at the inputs' real shapes (--data, open_session's data=)")

    def _op(self, n: Any, index: int) -> None:
        # read once: every protobuf field access makes a new Python object, and a big graph has 10⁴-10⁵ nodes
        # (a repeated field sliced whole is a list, made at half the cost of iterating the field)
        op_type, raw_name, outs = n.op_type, n.name, n.output[:]
        name = clean_name(raw_name.strip("/").replace("/", ".")) if raw_name else \
            _node_name(raw_name, outs, op_type, index)
        module = _module(n, raw_name) if len(n.metadata_props) else \
            _name_scope(raw_name) if raw_name[:1] == "/" or "-/" in raw_name else ""
        # validated now, before the handler runs; a shape the file leaves out is inferred only when asked for
        shapes = self.shapes
        if len(outs) == 1:  # most nodes (a comprehension costs a call more)
            declared = [self.file_declared(outs[0]) if outs[0] and outs[0] in shapes else None]
        else:
            declared = [self.file_declared(o) if o and o in shapes else None for o in outs]
        env = self.env
        inputs: list[Any] = []
        for i in n.input[:]:
            if not i:
                inputs.append(None)
                continue
            value = env.get(i, _ABSENT)
            if value is _ABSENT:
                raise ModelFormatError(f"{self.where}: node {name!r} uses {i[:60]!r} before any node produces it")
            inputs.append(value)
        mark = len(self.b.graph)
        domain = n.domain
        found = self._handlers.get((domain, op_type))
        if found is None:
            key = (f"{domain}.{op_type}" if domain not in ("", "ai.onnx") else op_type)[:120]  # shown in warnings
            handler = HANDLERS.get(key)
            shortcut = CATALOG_UNARY.get(key)
            found = (key, handler, shortcut[1] if shortcut is not None and shortcut[0] is handler else None)
            self._handlers[(domain, op_type)] = found
        key, handler, unary = found
        attrs: dict[str, Any] = {}
        if n.attribute:
            self._attributes(n.attribute, attrs, name, key in SUBGRAPH_OPS)
        ctx: Ctx | None = None
        try:
            if handler is None or (attrs and any(isinstance(v, Missing) for v in attrs.values())):
                raise Unmapped(next((v.reason for v in attrs.values() if isinstance(v, Missing)), ""))
            if unary is not None and not attrs and len(inputs) == 1 and type(inputs[0]) is Node:
                # Builder.op, one call less (10⁴-10⁵ times); `name` is clean already, so only a taken one needs fresh
                b = self.b
                result: Any = b.graph.add(unary, inputs[0], name=name if name not in b.graph else b.fresh(name),
                                          attrs=None, module=module, original_op=op_type)
            else:
                ctx = Ctx(op_type, name, module, None if None in declared else declared, attrs, self.opset,
                          tuple(outs), self)
                result = handler(self, inputs, ctx)
            if isinstance(result, Node):  # one node: most handlers (the loop below, unrolled)
                shape = declared[0] if declared else None
                if shape is not None and result.shape != shape:
                    raise Unmapped(f"mapped to shape {result.shape}, the file declares {shape}")
                results: list[Any] = [result]
            else:
                results = list(result) if isinstance(result, list | tuple) else [result]
                results = [np.asarray(v) if isinstance(v, np.generic) else v for v in results]
                for value, shape in zip(results, declared, strict=False):
                    if shape is not None and isinstance(value, Node) and value.shape != shape:
                        raise Unmapped(f"mapped to shape {value.shape}, the file declares {shape}")
        except (Unmapped, GraphError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError,
                OverflowError, AttributeError) as exc:  # a handler meeting values it cannot use: unsupported
            if len(self.b.graph) != mark:
                self.b.warnings.append(f"{key[:60]} at {name!r}: partial mapping dropped ({str(exc)[:120]})")
            if ctx is None:
                ctx = Ctx(op_type, name, module, None if None in declared else declared, attrs, self.opset,
                          tuple(outs), self)
            results = self._placeholder(key, inputs, ctx, str(exc)[:200] if isinstance(exc, Unmapped) else
                                        f"{type(exc).__name__}: {str(exc)[:200]}")
        for value in results:  # folded constants count against the open's budget (big folds are checked before)
            if isinstance(value, np.ndarray) and value.nbytes > 4096:
                charge(value.nbytes, f"the constant folded at {name!r}", self.where)
        for out, value in zip(outs, results, strict=False):
            if out:
                env[out] = value

    def _attributes(self, attributes: Any, attrs: dict[str, Any], name: str, subgraphs: bool = False) -> None:
        """A node's attributes as Python values into `attrs` (tensors as arrays; subgraphs as Subgraph where the
        op's handler reads them, else Missing)."""
        for a in attributes:
            kind = a.type
            if a.ref_attr_name:  # inside a function body: the value comes from the caller, not the file
                attrs[a.name] = Missing(f"attribute {a.name[:40]!r} refers to a function's attribute")
            elif kind == _INT:
                attrs[a.name] = a.i
            elif kind == _INTS:
                ints = a.ints  # a long run comes from onnx_proto as one array
                attrs[a.name] = ints.tolist() if isinstance(ints, np.ndarray) else list(ints)
            elif kind == _FLOAT:  # stored as float32: 0.1 comes back as the 0.1 the exporter saw
                attrs[a.name] = float(str(np.float32(a.f)))
            elif kind == _TENSOR:
                attrs[a.name] = tensor_array(a.t, self.where, f"attribute {a.name!r} of node {name!r}", self.folder)
            elif kind == _GRAPH and subgraphs:
                attrs[a.name] = Subgraph(a.g)
            elif kind in (_GRAPH, _GRAPHS):  # Loop, Scan: what runs depends on values, so nothing to step
                attrs[a.name] = Missing(f"control flow (its {a.name[:40]!r} is a subgraph); propscope steps no Loop "
                                        "or Scan, and an If only where its condition is known when the file is "
                                        "read: export with fixed shapes and no data-dependent branches, or unroll "
                                        "the loop")
            elif kind == _STRING:
                attrs[a.name] = bytes(a.s).decode("utf-8", "replace")
            elif kind == _FLOATS:
                attrs[a.name] = [float(v) for v in a.floats]
            elif kind == _STRINGS:
                attrs[a.name] = [bytes(v).decode("utf-8", "replace") for v in a.strings]
            elif kind == _TENSORS:
                attrs[a.name] = [tensor_array(t, self.where, f"attribute {a.name!r} of node {name!r}", self.folder)
                                 for t in a.tensors]
            elif kind in (11, 12, 13, 14):  # sparse tensors and type protos: no op the reader maps takes one
                attrs[a.name] = Missing(f"attribute {a.name[:40]!r} is of ONNX attribute type {kind}")
            else:  # 0 (undefined) or a number ONNX does not define
                raise ModelFormatError(f"{self.where}: attribute {a.name[:40]!r} of node {name[:60]!r} cannot be read "
                                       f"(attribute type {kind})")

    def inline(self, g: Any, ctx: Ctx) -> list[Any]:
        """The values of subgraph `g`'s outputs, its initializers and nodes read into the main graph as if they
        stood at this node (an If's chosen branch). Its nodes see the outer scope's values; the names it defines
        are its own, so each outer value it shadows is back in scope afterwards."""
        if len(g.input):
            raise Unmapped("its branch declares inputs, which ONNX's If branches do not take")
        if len(g.output) != len(ctx.outputs):
            raise Unmapped(f"its branch has {len(g.output)} outputs where the node has {len(ctx.outputs)}")
        env, shapes = self.env, self.shapes
        declared = {vi.name: dims for vi in (*g.value_info, *g.output) if (dims := _dims(vi)) is not None}
        defined = [*(init.name or f"initializer_{i}" for i, init in enumerate(g.initializer)),
                   *(o for n in g.node for o in n.output if o)]
        saved_env = {name: env.get(name, _ABSENT) for name in defined}
        saved_shapes = {name: shapes.get(name) for name in declared}
        try:
            shapes.update(declared)
            for i, init in enumerate(g.initializer):
                name = init.name or f"initializer_{i}"
                env[name] = Init(name, tensor_array(init, self.where, f"initializer {name!r} of {ctx.name!r}'s "
                                                   "branch", self.folder))
            for i, n in enumerate(g.node):
                self._op(n, i)
            results = []
            for vi in g.output:
                value = env.get(vi.name, _ABSENT)
                if value is _ABSENT:
                    raise ModelFormatError(f"{self.where}: output {vi.name[:60]!r} of the branch of "
                                           f"{ctx.name[:60]!r} is not produced by any node")
                results.append(value)
            return results
        finally:
            for name, value in saved_env.items():
                if value is _ABSENT:
                    env.pop(name, None)
                else:
                    env[name] = value
            for name, dims in saved_shapes.items():
                if dims is None:
                    shapes.pop(name, None)
                else:
                    shapes[name] = dims

    def _placeholder(self, key: str, inputs: list[Any], ctx: Ctx, reason: str) -> list[Any]:
        if not reason.startswith(DOWNSTREAM):
            self.refused[key] = self.refused.get(key, 0) + 1
            if self.first_stop is None and reason.startswith(("ShapeError", "GraphError")):  # sizes it cannot take
                # `ShapeError: conv2d node 'x': weight ...` said as `weight ...`
                said = re.sub(r"^\w+ node '[^']*': ", "", re.sub(r"^\w+Error: ", "", reason))
                self.first_stop = f"{key} {ctx.name[:80]!r} cannot run ({said[:160]})"
        nodes: list[Node] = []
        for v in inputs:
            if v is None or (isinstance(v, np.ndarray) and v.size < 64):
                continue
            try:
                node = self.node(v, ctx)
            except Unmapped:
                continue
            if node not in nodes:
                nodes.append(node)
        results: list[Any] = []
        for i, shape in enumerate(ctx.shapes):
            if shape is None:
                results.append(Missing(downstream(key, reason)))
                continue
            name = ctx.name if i == 0 else f"{ctx.name}.out{i}"
            results.append(self.b.unsupported(key, nodes, shape, name, ctx.module, reason))
        return results


def _name_refused_ops(model: Model, refused: dict[str, int]) -> None:
    """The unsupported-ops warning names the ops the reader refused, not only the placeholders: an op whose output
    shape the file leaves out (onnxruntime's com.microsoft fusions) makes no node, and the MatMul or Gemm after it
    that cannot be built is not what the user has to know about. Only where some placeholder stands downstream
    of a refused op is the message rewritten; its tail (the first stop and what it lacks) is kept."""
    from ..ops.unsupported import unsupported_nodes, unsupported_summary

    nodes = unsupported_nodes(model.graph)
    summary = unsupported_summary(model.graph)
    if not refused or summary is None or not model.warnings or model.warnings[0] != summary:
        return
    after = [n for n in nodes if str(n.meta.get("reason") or "").startswith(DOWNSTREAM)]
    if not after:
        return
    ops = ", ".join(f"{op} ×{k}" if k > 1 else op for op, k in refused.items())
    behind = ", ".join(dict.fromkeys(str(n.attrs.get("original_op", "?")) for n in after))
    tail = summary[summary.index("; the graph opens"):]
    model.warnings[0] = (f"{sum(refused.values())} node(s) use ops propscope does not support: {ops}; "
                         f"{len(after)} node(s) after them cannot be built ({behind}){tail}")


def _param_module(name: str, fallback: str) -> str:
    if "." in name and not name.startswith("onnx::"):
        return name.rsplit(".", 1)[0]
    return fallback


def open(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Model:
    path = Path(path)
    where = str(path)
    size = file_size(path, where, MAX_FILE_BYTES, "more than an ONNX file can hold without external data")
    charge(size, "its bytes", where)  # tensors' raw_data stay views of them until each is copied into its array
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    return open_bytes(data, where, path.resolve().parent, path.stem, input_shapes, partial(open, path))


def open_bytes(data: bytes, where: str, folder: Path | None = None, stem: str = "model",
               input_shapes: Mapping[str, tuple[int, ...]] | None = None,
               reread: Callable[[Mapping[str, tuple[int, ...]]], Model] | None = None) -> Model:
    """An ONNX file's bytes read as `open` reads the file (external data only from `folder`, where given), its
    symbolic input sizes at `input_shapes` (by input name; by default those `sizes.reading_at` asks for, else 1);
    `reread` reads it again at other ones (`SizedModel`)."""
    try:
        model = onnx_proto.read_model(data, lambda nbytes: charge(nbytes, "its protobuf messages", where))
    except onnx_proto.DecodeError as exc:  # the bytes are not an ONNX model
        raise ModelFormatError(f"{where}: not a valid ONNX file ({str(exc)[:160]})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not (model.graph.node or model.graph.output):
        raise ModelFormatError(f"{where}: not an ONNX model (no graph with nodes and outputs)")
    reader = Reader(model, where, clean_name(model.graph.name or stem))
    reader.folder, reader.serialized = folder, data
    reader.input_shapes = dict(requested_shapes() if input_shapes is None else input_shapes)
    reader.switches = dict(requested_switches())
    if model.functions:
        names = ", ".join(f.name[:40] for f in model.functions[:4])
        reader.b.warnings.append(f"the model defines local functions ({names}); nodes that call them are unsupported")
    return sized(reader.read(), reader.symbolic, reread)


def open_proto(model: Any, where: str = "<ModelProto>") -> Model:
    """A ModelProto already in memory (an ONNX backend's `prepare`), read as `open` reads a file.

    Its tensors must hold their data inline: with no folder, external data is refused.
    """
    if not hasattr(model, "graph") or model.ir_version <= 0 or not model.HasField("graph") \
            or not (model.graph.node or model.graph.output):
        raise ModelFormatError(f"{where}: not an ONNX model (no graph with nodes and outputs)")
    reader = Reader(model, where, clean_name(model.graph.name or "model"))
    if model.functions:
        names = ", ".join(f.name[:40] for f in model.functions[:4])
        reader.b.warnings.append(f"the model defines local functions ({names}); nodes that call them are unsupported")
    try:
        return reader.read()
    except (TypeError, AttributeError):
        # checked only on failure (~8 µs a node): protobuf hands back bytes for a name that is not UTF-8
        check_strings(model, where)
        raise


def check_strings(model: Any, where: str) -> None:
    """Every name the reader uses is text (protobuf hands back bytes for a name that is not UTF-8)."""
    g = model.graph

    def text(value: Any, what: str) -> None:
        if not isinstance(value, str):
            raise ModelFormatError(f"{where}: {what} is not valid UTF-8 text")

    text(g.name, "the graph's name")
    for i, n in enumerate(g.node):
        for what, value in (("name", n.name), ("op type", n.op_type), ("domain", n.domain)):
            text(value, f"the {what} of node #{i}")
        for value in (*n.input, *n.output, *(a.name for a in n.attribute), *(a.ref_attr_name for a in n.attribute)):
            text(value, f"a name in node #{i}")
    for group, items in (("initializer", g.initializer), ("input", g.input), ("output", g.output),
                         ("value_info", g.value_info)):
        for i, item in enumerate(items):
            text(item.name, f"the name of {group} #{i}")
    for prop in (*model.opset_import,):
        text(prop.domain, "an opset domain")


# -- what every handler module uses -------------------------------------------------------------
def attr_or_input(r: Reader, ins: list[Any], ctx: Ctx, index: int, name: str, default: Any = None) -> Any:
    """An operand that newer opsets pass as an input and older ones as an attribute (axes, pads, split...)."""
    if len(ins) > index and ins[index] is not None:
        value = r.folded(ins[index])
        if value is None:
            raise Unmapped(f"{name} computed at run time")
        return [int(v) for v in value.reshape(-1)]
    value = ctx.attrs.get(name, default)
    return None if value is None else list(value) if isinstance(value, list | tuple) else value


def zeros_bias(r: Reader, out: int, ctx: Ctx) -> Node:
    return r.b.const(np.zeros(out), ctx.module, "no_bias")


from . import onnx_ops  # noqa: E402, F401  (registers the handlers; they import this module's Reader and Ctx)
