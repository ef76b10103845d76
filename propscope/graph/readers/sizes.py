"""The sizes a model file is read at: its inputs' dynamic (symbolic) sizes taken from the data, and a model that can
be read again at other sizes (`SizedModel`: a dynamic batch, a sequence length, an image size).

The data reaches a reader through the layers between (`load_target`, `open_model`) as a context variable
(`reading_at`, `requested_shapes`): a reader asks for it where its file leaves a size open. `SizedModel.at_sizes`
is how the debugger moves a model to its data's sizes (`Session.model_at`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..model import OTHER_SIZES, READ_AT, TARGET, Model
from ._budget import memory_budget

_requested_shapes: ContextVar[Mapping[str, tuple[int, ...]] | None] = ContextVar("requested_shapes", default=None)
_requested_switches: ContextVar[Mapping[str, Any] | None] = ContextVar("requested_switches", default=None)


@contextmanager
def reading_at(shapes: Mapping[str, tuple[int, ...]] | None,
               switches: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Files read meanwhile take their inputs' dynamic (symbolic) sizes from `shapes` (by input name: the data's),
    where one is given: the data reaches the reader through the layers between (`load_target`, `open_model`).
    `switches`: the data's one-element arrays by input name, for a file whose graph is chosen by such an input's value
    when it is read (optimum's merged decoder: `use_cache_branch` picks one of two branches)."""
    token = _requested_shapes.set({k: tuple(int(d) for d in v) for k, v in shapes.items()} if shapes else None)
    try:
        with switched_by(switches):
            yield
    finally:
        _requested_shapes.reset(token)


@contextmanager
def switched_by(switches: Mapping[str, Any] | None) -> Iterator[None]:
    """Files read meanwhile (a model read again at new data: `SizedModel.at_sizes`) pick a branch an input of one
    element decides by its value in `switches` (the data); with None, by the switches given around this."""
    if switches is None:
        yield
        return
    token = _requested_switches.set({k: v for k, v in switches.items() if np.size(v) == 1})
    try:
        yield
    finally:
        _requested_switches.reset(token)


def requested_shapes() -> Mapping[str, tuple[int, ...]]:
    """The input shapes a file is to be read at (`reading_at`), {} where none are asked for."""
    return _requested_shapes.get() or {}


def requested_switches() -> Mapping[str, Any]:
    """The data's one-element arrays a file is read with (`reading_at`), by input name; {} where none are given."""
    return _requested_switches.get() or {}


def bind_symbol(bound: dict[str, tuple[int, str, int]], symbol: str, value: int, input_name: str, axis: int) -> None:
    """Record that dynamic dimension `symbol` is `value` (axis `axis` of input `input_name`), refusing in one line
    a value that disagrees with one already recorded for it."""
    seen = bound.get(symbol)
    if seen is not None and seen[0] != value:
        raise ShapeError(f"input {input_name!r} dimension {axis} and input {seen[1]!r} dimension {seen[2]} share the "
                         f"dynamic dimension {symbol!r}, but the data gives them {value} and {seen[0]}; arrays that "
                         "share it must agree")
    bound.setdefault(symbol, (value, input_name, axis))


@dataclass
class SizedModel(Model):
    """A model whose file leaves some input sizes symbolic (a dynamic batch, sequence length or image size): read at
    the sizes of the file's example inputs, or of the data. `symbolic` names each symbolic axis of each input (None
    for a size the file fixes); `at_sizes` reads the file again with the symbolic ones at other sizes."""

    symbolic: dict[str, tuple[str | None, ...]] = field(default_factory=dict)
    reread: Callable[[Mapping[str, tuple[int, ...]]], Model] | None = None

    def _asked(self, shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, tuple[int, ...]], bool]:
        """The inputs' shapes to read the file at, and whether a symbolic size among them differs from now (or the
        value of an input that picked a branch when the file was read: `switched_by`)."""
        wanted: dict[str, tuple[int, ...]] = {}
        changed = bool(switches_changed(self))
        for node in self.graph.inputs:
            axes, shape = self.symbolic.get(node.name), shapes.get(node.name)
            if axes is None or shape is None or len(shape) != len(axes):
                continue
            wanted[node.name] = tuple(int(d) for d in shape)
            changed = changed or any(s is not None and d != n for s, d, n in zip(axes, shape, node.shape, strict=True))
        return wanted, changed and self.reread is not None

    def reads_again_at(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        """Whether `at_sizes(shapes)` reads the file again (seconds, for a model traced by torch), without doing it."""
        return self._asked(shapes)[1]

    def at_sizes(self, shapes: Mapping[str, tuple[int, ...]]) -> Model:
        """The model at the data's `shapes` (by input name): itself where no symbolic size differs (a fixed size
        that differs is `fit_batch`'s to name), else the file read again, its output chosen and read as before."""
        wanted, changed = self._asked(shapes)
        if not changed or self.reread is None:
            return self
        with memory_budget():
            fresh = self.reread(wanted)
        if fresh.image_normalization != self.image_normalization:  # the one asked for (--normalize) stays
            fresh = replace(fresh, image_normalization=self.image_normalization)
        out = self.graph.output
        rows = bool(out.meta.get("per_token"))  # the session read the logits a row per token (Model.per_token)
        if self.output_order is not None:  # and put another output first (Model.with_output): by its position in
            fresh = fresh.with_output(self.output_order.index(out.name))  # the file's order (a name may be changed)
        return fresh.per_token() if rows else fresh


def switches_changed(model: Model) -> tuple[tuple[str, bool], ...]:
    """The inputs that picked a branch when `model`'s file was read (`READ_AT`) whose value the data around
    (`switched_by`) gives otherwise, with that value; () where none."""
    given = requested_switches()
    changed = []
    for node in model.graph.inputs:
        read_at, value = node.meta.get(READ_AT), given.get(node.name)
        if read_at is not None and value is not None and bool(np.asarray(value).reshape(-1)[0]) != read_at[0]:
            changed.append((node.name, not read_at[0]))
    return tuple(changed)


def sized(model: Model, symbolic: Mapping[str, tuple[str | None, ...]],
          reread: Callable[[Mapping[str, tuple[int, ...]]], Model] | None) -> Model:
    """`model` as a SizedModel where some input has a symbolic size, else as it is."""
    if not any(s is not None for axes in symbolic.values() for s in axes):
        return model
    fields = {name: getattr(model, name) for name in Model.__dataclass_fields__}
    return SizedModel(**fields, symbolic=dict(symbolic), reread=reread)


def requested_batch(default: int = 1) -> int:
    """The batch the data asks a module traced by a reader for (`reading_at`): its inputs' leading size, where they
    agree (the target's aside); else `default`."""
    batches = {shape[0] for name, shape in requested_shapes().items() if shape and name != TARGET}
    return next(iter(batches)) if len(batches) == 1 else default


def read_again_at(read: Callable[..., Model], *args: Any) -> Callable[[Mapping[str, tuple[int, ...]]], Model]:
    """A `SizedModel.reread` for a reader's `read(*args)`: the same call, made within `reading_at` the sizes asked."""
    def reread(shapes: Mapping[str, tuple[int, ...]]) -> Model:
        with reading_at(shapes):
            return read(*args)

    return reread


def resizable_by(model: Model, how: str) -> Model:
    """`model`, its inputs naming `how` it is built at other sizes (`torchvision:resnet18@SIZE`), for an architecture
    built by name, whose sizes are the builder's choice: what `fit_batch`'s refusal of data of another size offers."""
    for node in model.graph.inputs:
        node.meta[OTHER_SIZES] = how
    return model


def batch_sized(model: Model, reread: Callable[[Mapping[str, tuple[int, ...]]], Model]) -> Model:
    """A model a reader traced from a module at one batch size (an architecture by name): its inputs' leading size
    follows the data, the module traced again at it (`reread`, called within `reading_at`)."""
    return sized(model, {n.name: ("batch", *[None] * (len(n.shape) - 1)) for n in model.graph.inputs if n.shape},
                 reread)
