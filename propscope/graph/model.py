"""`Model`: a graph plus what it needs to run: leaf values, a default batch, a default loss."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import GraphError, ShapeError
from .ir import Graph, Node
from .ops import LOSSES
from .ops.shapes import fmt

TARGET = "y"
# An input's meta: how to open the model at other sizes where its reader can build it so (`torchvision:resnet18@SIZE`),
# named when data of another size does not fit; absent where the sizes are the file's own
OTHER_SIZES = "other_sizes"
# An input's meta: (value, node) where the graph was chosen by this one-element input's value when the file was read
# (optimum's merged decoder: `use_cache_branch` picks one branch of an If); data with another value does not fit
READ_AT = "read_at"


@dataclass
class TrainingDefaults:
    """The settings an example trains with unless the user says otherwise."""

    optimizer: str = "sgd"
    lr: float = 0.1
    epochs: int = 100
    batch_size: int | None = None


@dataclass
class Model:
    """What a model file or an example holds.

    `graph` is the network without a loss; `arrays` holds parameter and constant values by node
    name; `batch` holds a default batch by input name (the target under `y`).
    """

    graph: Graph
    arrays: dict[str, np.ndarray]
    batch: dict[str, np.ndarray] = field(default_factory=dict)
    loss: str | None = None
    metrics: tuple[str, ...] = ()
    training: TrainingDefaults = field(default_factory=TrainingDefaults)
    description: str = ""
    dataset: tuple[str, dict[str, Any]] | None = None
    warnings: list[str] = field(default_factory=list)  # what a reader could not map or load, one sentence each
    # other names of a parameter shared under several (tied embeddings: GPT-2's transformer.wte.weight is its
    # lm_head.weight), by the name the graph keeps; Session.value and .grad answer to them
    aliases: dict[str, str] = field(default_factory=dict)
    # the outputs' names in the order the file gave them, once `with_output` has put another first
    output_order: tuple[str, ...] | None = None
    # a module traced along the path its inputs take (readers/decisions.py): what its forward decided by value, one
    # text each; such a graph holds for those inputs only (the session refuses other data and training)
    decisions: tuple[str, ...] = ()
    # the batch's target `y` was drawn at random (no data gave one), as a saved session records it: reopened, it is
    # still not the user's labels (another loss draws its own, and the app says so)
    target_drawn: bool = False
    # how an image becomes this model's input after its pixels / 255: per-channel mean and std, and where that was
    # read (a transformers folder's preprocessor_config.json, torchvision's or timm's weights); None: as it is
    image_normalization: tuple[tuple[float, ...], tuple[float, ...], str] | None = None
    # how an image is brought to this model's input size (`datasets.ImageFit`: its centre cut out as torchvision's and
    # timm's evaluation does, letterboxed as ultralytics'), and where that was read; None: stretched to it
    image_fit: tuple[str, float, str, str] | None = None

    def __post_init__(self) -> None:
        for node in self.graph.leaves:
            if node.op.name != "input" and node.name not in self.arrays:
                raise GraphError(f"{node.op.name} {node.name!r} has no value in the model")

    @property
    def parameters(self) -> dict[str, np.ndarray]:
        return {n.name: self.arrays[n.name] for n in self.graph.parameters}

    def with_graph(self, graph: Graph) -> Model:
        return replace(self, graph=graph)

    def with_output(self, output: str | int | None) -> Model:
        """The model with `output` (a name among the graph's outputs, or its position in the order the file gave
        them) first: the prediction a loss attaches to. The other outputs stay outputs, computed and shown."""
        if output is None:
            return self
        order = self.output_order or tuple(o.name for o in self.graph.outputs)
        outputs = [self.graph[n] for n in order]
        names = [o.name for o in outputs]
        returned = [o.meta.get("returns") for o in outputs]  # what a module's forward calls them
        if isinstance(output, int) or (isinstance(output, str) and output.isdigit() and output not in names + returned):
            index = int(output)
            if not 0 <= index < len(outputs):
                raise GraphError(f"output {index} does not exist: the model has {outputs_text(outputs)}")
            chosen = outputs[index]
        elif output in names:
            chosen = outputs[names.index(output)]
        elif output in returned:
            chosen = outputs[returned.index(output)]
        else:
            raise GraphError(f"no output named {output!r}: the model has {outputs_text(outputs)}")
        if chosen is self.graph.output:
            return self
        graph = self.graph.copy()
        graph.set_outputs(chosen.name, *(n for n in names if n != chosen.name))
        return replace(self, graph=graph, output_order=order)

    def renamed(self, names: Mapping[str, str]) -> Model:
        """The model with nodes renamed (old name -> new): its graph, its arrays and the names that point at them."""
        if not names:
            return self
        graph = self.graph.copy(renamed=names)
        for old, new in names.items():
            graph[new].meta.setdefault("returns", old)  # still shown by the name the file gave it
        inputs = {n.name for n in self.graph.inputs}  # the data recorded for a renamed input goes with it
        batch = {names[k] if k in names and k in inputs else k: v for k, v in self.batch.items()}
        return replace(self, graph=graph, arrays={names.get(k, k): v for k, v in self.arrays.items()}, batch=batch,
                       aliases={k: names.get(v, v) for k, v in self.aliases.items()},
                       output_order=self.output_order and tuple(names.get(n, n) for n in self.output_order))

    def per_token(self, rows: bool = True) -> Model:
        """The model with its prediction read as a row per token: (batch, tokens, …, vocabulary) logits reshaped to
        (batch · tokens · …, vocabulary), as a language model's loss reads them (`logits.view(-1, V)`) and
        cross-entropy (classes on axis 1, as torch lays them out) then takes them, with (batch, tokens) labels. The
        other outputs stay outputs. `rows=False` gives the logits as the model returns them again."""
        out = self.graph.output
        if bool(out.meta.get("per_token")) == rows:
            return self
        if not rows:
            return self._without_rows(out)
        if len(out.shape) < 3:
            raise GraphError(f"the output {output_name(out)!r} is {fmt(out.shape)}: a row per token needs "
                             "(batch, tokens, vocabulary) logits")
        graph = self.graph.copy()
        reshaped = graph.add("reshape", graph[out.name], name=f"{out.name}_per_token",
                             attrs={"shape": (-1, out.shape[-1])}, module=out.module, per_token=True,
                             returns=f"{output_name(out)} per token")
        graph.set_outputs(reshaped, *(o.name for o in self.graph.outputs if o is not out))
        order = self.output_order and tuple(reshaped.name if n == out.name else n for n in self.output_order)
        return replace(self, graph=graph, output_order=order)

    def _without_rows(self, rows: Node) -> Model:
        logits = rows.inputs[0]
        graph = self.graph.copy(without=(rows.name,))
        graph.set_outputs(logits.name, *(o.name for o in self.graph.outputs if o is not rows))
        order = self.output_order and tuple(logits.name if n == rows.name else n for n in self.output_order)
        return replace(self, graph=graph, output_order=order)

    @property
    def outputs_note(self) -> str:
        """One line saying which output a loss goes on, for a model with several ("" for one)."""
        outputs = self.graph.outputs
        if len(outputs) < 2:
            return ""
        return f"{outputs_text(outputs)}; the loss goes on the first, {output_name(outputs[0])!r}"

    @property
    def unsupported_ops(self) -> dict[str, int]:
        """The ops of the file that propscope cannot run, by name, with how many nodes use each."""
        from .ops.unsupported import original_op, unsupported_nodes

        counts: dict[str, int] = {}
        for node in unsupported_nodes(self.graph):
            counts[original_op(node)] = counts.get(original_op(node), 0) + 1
        return counts


def output_name(node: Node) -> str:
    """What the user calls an output: the name a module's forward returned it under (GoogLeNet's `aux_logits1`),
    else its node's."""
    return str(node.meta.get("returns") or node.name)


def outputs_text(outputs: list[Node]) -> str:
    """"3 outputs: logits (1, 10), aux (1, 10), ..." for a message."""
    shown = ", ".join(f"{output_name(o)} {fmt(o.shape)}" for o in outputs[:6])
    more = f", and {len(outputs) - 6} more" if len(outputs) > 6 else ""
    return f"{len(outputs)} output{'s' if len(outputs) != 1 else ''}: {shown}{more}"


def class_axis(logits: tuple[int, ...]) -> int:
    """Where cross-entropy's classes are, as torch lays logits out: (C,), (N, C) or (N, C, d1, ...)."""
    return 1 if len(logits) >= 2 else 0


def class_indices_shape(logits: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the class indices cross-entropy takes for `logits`: (), (N,) or (N, d1, ...) (a
    segmentation map's (N, H, W))."""
    axis = class_axis(tuple(logits))
    return tuple(logits[:axis]) + tuple(logits[axis + 1:])


def attach_loss(graph: Graph, loss: str, target_shape: tuple[int, ...] | None = None) -> Graph:
    """A copy of `graph` with a target input `y` and a `loss` node on its first output, which becomes the graph's first
    output; its other outputs follow (still computed, shown and read as outputs, with no gradient of their own)."""
    if loss not in LOSSES:
        raise GraphError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    if TARGET in graph:  # the session renames the model's own `y` first (Model.renamed(target_name_freed(...)))
        raise GraphError(f"the model has a {graph[TARGET].op.name} named {TARGET!r}, the name of the loss's target; "
                         "rename it (Model.renamed) before attaching a loss")
    new = graph.copy()
    pred = new.output
    if target_shape is None:
        target_shape = class_indices_shape(pred.shape) if loss == "cross_entropy" else pred.shape
    target = new.input(TARGET, target_shape, role="target")
    node = new.add(loss, pred, target, name="loss")
    new.set_outputs(node, *(o for o in new.outputs if o is not pred))
    return new


def target_name_freed(graph: Graph) -> dict[str, str]:
    """The renaming that frees the target's name `y` in `graph`: a node of the model called so (an ONNX file's output
    or initializer named `y`, as ONNX's own examples name them, or a forward's input `y`) becomes `y_model`, shown by
    its own name still. The data gives such an input as `y_model` then, its `y` being the loss's target."""
    if TARGET not in graph:
        return {}
    fresh = next(f"{TARGET}_model{i or ''}" for i in range(len(graph) + 1) if f"{TARGET}_model{i or ''}" not in graph)
    return {TARGET: fresh}


def fit_batch(graph: Graph, batch: Mapping[str, np.ndarray]) -> Graph:
    """`graph` rebuilt for this batch's sizes, or a ShapeError saying expected and got.

    Only the leading (batch) dimension may differ from the graph's declared input shapes.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for node in graph.inputs:
        if node.name not in batch:
            renamed = f"; the model's input {TARGET!r}, so named as the data's {TARGET!r} is the loss's target" \
                if node.meta.get("returns") == TARGET else ""
            raise ShapeError(f"the data has no array for input {node.name!r} (expected shape {fmt(node.shape)}"
                             f"{renamed})")
        got = tuple(np.shape(batch[node.name]))
        want = node.shape
        read_at = node.meta.get(READ_AT)
        if read_at is not None and got == want and bool(np.asarray(batch[node.name]).reshape(-1)[0]) != read_at[0]:
            raise ShapeError(f"input {node.name!r} is {str(not read_at[0]).lower()} in the data, but the model was "
                             f"read with it {str(read_at[0]).lower()} (it picks the branch of {read_at[1]!r} when the "
                             "file is read): open the file again with this data")
        if got == want:
            continue
        if len(got) != len(want) or not want or got[1:] != want[1:]:
            batched = len(want) >= 2 and len(got) == len(want)  # only the batch may differ: say so
            resized = node.meta.get(OTHER_SIZES)
            fixed = f"{resized} builds it at other sizes" if resized else \
                "the other sizes are the ones the model was built, traced or exported at"
            hint = f" (any batch size: ({', '.join(['N', *map(str, want[1:])])}); {fixed})" if batched else ""
            raise ShapeError(f"input {node.name!r}: expected shape {fmt(want)}, got {fmt(got)}{hint}")
        shapes[node.name] = got
    if not shapes:
        return graph
    try:
        return graph.copy(input_shapes=shapes)
    except ShapeError as exc:  # a new size that the ops cannot take (a 1-D input has no batch axis)
        fits = "; ".join(f"input {k!r}: expected shape {fmt(graph[k].shape)}, got {fmt(v)}" for k, v in shapes.items())
        raise ShapeError(f"{fits} ({exc})") from None


def output_node(graph: Graph) -> Node:
    """The prediction: the loss's first input when a loss is attached, else the first output."""
    out = graph.output
    return out.inputs[0] if out.op.is_loss else out


MAX_EXAMPLE_ELEMENTS = 50_000_000  # a generated batch larger than this is refused, not allocated


def image_normalization(mean: Any, std: Any, source: str) -> tuple[tuple[float, ...], tuple[float, ...], str] | None:
    """`Model.image_normalization` from what a file or library gives (a config's lists of numbers), or None where
    they are not one or three finite numbers each, the same count, every std above 0 (within what pixels / 255 can
    be normalized by and stay finite in float32: |mean| ≤ 255, 1e-6 ≤ std ≤ 255)."""
    def numbers(v: Any) -> tuple[float, ...] | None:
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, list | tuple) or len(v) not in (1, 3):
            return None
        if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in v):
            return None
        return tuple(float(x) for x in v)

    m, sd = numbers(mean), numbers(std)
    if m is None or sd is None or len(m) != len(sd) or max(map(abs, m)) > 255 or not 1e-6 <= min(sd) <= max(sd) <= 255:
        return None
    return m, sd, source


FIT_KINDS = ("crop", "squash-crop", "letterbox")  # `Model.image_fit`: see datasets.ImageFit


def image_fit(kind: Any, fraction: Any, source: str,
              resampling: Any = "bilinear") -> tuple[str, float, str, str] | None:
    """`Model.image_fit` (`datasets.ImageFit`) from what a file or library gives, or None where it is not one of
    `FIT_KINDS` with a fraction in [0.25, 1] (of each side, what is cut from the centre: never less than a quarter);
    `resampling` other than "bicubic" is bilinear."""
    if kind not in FIT_KINDS or isinstance(fraction, bool) or not isinstance(fraction, int | float):
        return None
    if not (math.isfinite(fraction) and 0.25 <= fraction <= 1):
        return None
    return str(kind), float(fraction), "bicubic" if resampling == "bicubic" else "bilinear", source


# meta of a model's scores output: which of its (rows, classes) scores are finite on the sample it was read with
# (a reader that saw −∞ there); `example_batch` draws a cross-entropy target among them
FINITE_CLASSES = "finite_classes"


def example_batch(
    graph: Graph, seed: int = 0, loss: str | None = None, base: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """A batch of the declared shapes for a model that came without data (seeded, so runs repeat).

    Arrays already in `base` are kept. Inputs that feed an embedding or an index get whole-number
    ids in range, an embedding bag's offsets ascend from 0; others draw from N(0, 1). With a loss, a
    target `y` is drawn too: class indices for cross_entropy, 0/1 for bce, N(0, 1) otherwise.
    """
    batch = {k: np.asarray(v) for k, v in (base or {}).items()}
    rng = np.random.default_rng(seed)
    wanted = [n for n in graph.inputs if n.name not in batch]
    size = sum(int(np.prod(n.shape, dtype=object)) for n in wanted)
    if size > MAX_EXAMPLE_ELEMENTS:
        raise ShapeError(f"the inputs declare {size} elements, too many for a generated batch; pass --data")
    for node in wanted:
        limit = _id_range(graph, node)
        entries = _bag_entries(graph, node)
        if entries is not None and len(node.shape) == 1:  # an embedding bag's offsets: 0, then ascending
            starts = np.sort(rng.integers(0, entries + 1, max(node.shape[0] - 1, 0)))
            batch[node.name] = np.concatenate([[0], starts])[:node.shape[0]].astype(np.int64)
        elif READ_AT in node.meta:  # the value the file's branch was chosen by
            batch[node.name] = np.full(node.shape, node.meta[READ_AT][0])
        elif limit is not None:
            batch[node.name] = rng.integers(0, limit, node.shape).astype(np.int64)
        else:
            batch[node.name] = rng.standard_normal(node.shape)
    if loss is not None and loss != "none" and TARGET not in batch:
        node = output_node(graph)
        pred = node.shape
        finite = node.meta.get(FINITE_CLASSES)
        if loss == "cross_entropy" and finite is not None and tuple(np.shape(finite)) == tuple(pred):
            # scores masked to −∞ (Grounding DINO's classes past the text): a class each row leaves finite, or the
            # loss opens as infinity
            batch[TARGET] = np.array([rng.choice(np.flatnonzero(row)) if row.any() else 0 for row in finite],
                                     dtype=np.int64)
        elif loss == "cross_entropy":
            classes = pred[class_axis(pred)] if pred else 2
            batch[TARGET] = rng.integers(0, classes, class_indices_shape(pred)).astype(np.int64)
        elif loss == "bce":
            batch[TARGET] = rng.integers(0, 2, pred).astype(np.float64)
        else:
            batch[TARGET] = rng.standard_normal(pred)
    return batch


def _id_range(graph: Graph, node: Node) -> int | None:
    """How many ids an input may hold when it feeds lookups (embedding rows, indexed axis), else None."""
    limits = []
    for user in graph.users(node):
        for i, a in enumerate(user.inputs):
            if a is not node:
                continue
            if user.op.name in ("embedding", "embedding_bag") and i == 0:
                limits.append(user.inputs[1].shape[0])
            elif user.op.name == "index" and i == 1:
                x = user.inputs[0].shape
                limits.append(x[int(user.attrs.get("axis", 0)) % len(x)])
    return min(limits) if limits else None


def _bag_entries(graph: Graph, node: Node) -> int | None:
    """How many ids an embedding bag looks up, when `node` gives that bag's offsets; else None."""
    for user in graph.users(node):
        if user.op.name == "embedding_bag" and len(user.inputs) > 2 and user.inputs[2] is node:
            return int(user.inputs[0].shape[0])
    return None
