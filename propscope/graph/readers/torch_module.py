"""A model held in Python: a `torch.nn.Module` with the inputs it is called with (a notebook's, a training script's),
or an `ExportedProgram`. The module is traced with `torch.export.export` on those inputs and read as any `.pt2`, so
the parameters keep their names (`layer1.0.conv1.weight`) and the inputs become the session's batch.

The module is exported in the mode it is in: in training mode batch norm uses the batch's statistics and dropout
drops (`model.eval()` first for inference). Neither the module's parameters, its buffers, its mode nor its class are
changed. A transformers model returns its scores alone (token logits a row per token, so that a cross-entropy loss
applies), a diffusers model the tensor its output holds in `.sample` (MSE the default loss), as when their checkpoint
folders are opened.
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..model import Model
from . import decisions, diffusers_checkpoint, torch_export, transformers_checkpoint
from ._budget import memory_budget
from ._failure import capture_warnings, first_line, quiet_torch

USAGE = "open_session(model, inputs=x): a tensor, a tuple of them (positional) or a dict (by argument name)"


def is_live(target: object) -> bool:
    """Whether `target` is a torch module or exported program (torch is imported already by whoever holds one)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    export = getattr(torch, "export", None)  # a submodule torch imports on first use
    return isinstance(target, (torch.nn.Module, *((export.ExportedProgram,) if export is not None else ())))


def open_module(target: Any, inputs: Any = None, name: str | None = None) -> Model:
    """The Model of a live module called with `inputs`, or of an ExportedProgram (with the inputs it was exported
    with). `name` names the graph (default: the module's class). The copies of its tensors count against one memory
    budget, as a file's do; torch's warnings while it traces are kept off the terminal."""
    with memory_budget(), capture_warnings():
        opened = _open(target, inputs, name)
    if opened.decisions:  # a script's or a notebook's user reads no command line: Python's own warning tells them
        warnings.warn(f"propscope: {opened.graph.name}: {decisions.summary_of(opened.decisions)}", UserWarning,
                      stacklevel=2)
    return opened


def _open(target: Any, inputs: Any, name: str | None) -> Model:
    import torch

    what = name or type(target).__name__
    if isinstance(target, torch.export.ExportedProgram):
        if inputs is not None:
            raise ModelFormatError(f"{what}: an ExportedProgram is read with the inputs it was exported with; "
                                   "inputs= is for an nn.Module")
        opened = torch_export.open_program(target, what)
        opened.description = f"an ExportedProgram handed over in Python: {len(opened.graph.ops)} ops"
        return opened
    if not isinstance(target, torch.nn.Module):
        raise ModelFormatError(f"{what}: not a torch.nn.Module or an ExportedProgram")
    args, kwargs = _arguments(torch, target, inputs, what)
    library = type(target).__module__.split(".")[0]
    transformers, diffusers = library == "transformers", library == "diffusers"
    parameters = inspect.signature(target.forward).parameters
    if transformers and ("use_cache" in parameters or (  # Qwen3.5 takes it through **kwargs
            _caches(getattr(target, "config", None))
            and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()))):
        kwargs.setdefault("use_cache", False)  # one pass over the whole sequence: no key/value cache to return
    mode = "training" if target.training else "evaluation"
    outputs = transformers_checkpoint.scores_only(target) if transformers else \
        diffusers_checkpoint.sample_only(target) if diffusers else plain_outputs(target)
    decided: list[decisions.Decision] = []
    with outputs as picked:
        try:
            with quiet_torch(), kept_attributes(target):
                program = torch.export.export(target, args, kwargs)
        except Exception as exc:  # torch.export's messages run to pages: their first line says what stopped it
            refusal = f"{what}: torch.export could not trace it on these inputs ({first_line(exc, 160)})"
            program, decided = along_its_path(torch, target, args, kwargs, refusal)
        else:
            program, decided = sized_by_values(torch, target, args, kwargs, program)
    opened = torch_export.open_program(program, what)
    del program
    names = picked.get("returns")
    if names and len(names) == len(opened.graph.outputs):
        for node, returned in zip(opened.graph.outputs, names, strict=True):
            node.meta["returns"] = returned  # what the module calls it: `outputs_text` shows it, `output=` takes it
    opened.aliases = torch_export.tied_names(target, opened)
    opened.description = (f"{type(target).__name__} handed over in Python ({mode} mode), exported with torch.export: "
                          f"{len(opened.graph.ops)} ops")
    if picked["gives"] == "logits":
        opened.loss = "cross_entropy"
    if decided:
        decisions.mark(opened, decided)
    if diffusers:
        diffusers_checkpoint.default_loss(opened, type(target))
    return opened


def _caches(config: Any) -> bool:
    """Whether a transformers config (or its text model's) says the model keeps a key/value cache."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else None
    return any(getattr(c, "use_cache", None) is not None for c in (config, text) if c is not None)


def along_its_path(torch: Any, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    refusal: str) -> tuple[Any, list[decisions.Decision]]:
    """The program of the path these inputs take through a forward that decides by values (`decisions`), checked
    to compute what the module does; `refusal` (torch.export's own reason) where the forward decides nothing by
    value or the path cannot be replayed. The module's buffers (batch norm's running statistics) and the random
    state are left as they were; a dropout draws the same in the run and in the check."""
    saved = {name: buffer.detach().clone() for name, buffer in module.named_buffers()}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            with kept_attributes(module):
                decided, expected = decisions.record(module, args, kwargs)
            with quiet_torch(), kept_attributes(module), decisions.replaying(decided) as sizes:
                program = torch.export.export(module, args, kwargs)
            if not decided and not sizes:  # nothing decided by value: torch.export's reason stands
                raise ModelFormatError(refusal)
            decided = [*decided, *sizes]
            # what computed a decided value (`h.sum() > 0`) is left unused once the value is a constant
            program.graph.eliminate_dead_code()
            program.graph_module.recompile()
            torch.manual_seed(0)
            decisions.check_same(program, args, kwargs, expected)
    except ModelFormatError as exc:
        raise ModelFormatError(refusal if str(exc) == refusal else f"{refusal}; traced along the path these inputs "
                               f"take instead: {exc}") from None
    except Exception as exc:  # the module's own code failing when run, or torch.export on the replayed path
        raise ModelFormatError(f"{refusal}; traced along the path these inputs take instead: "
                               f"{first_line(exc, 120)}") from None
    finally:
        with torch.no_grad():
            for name, buffer in module.named_buffers():
                if name in saved and buffer.shape == saved[name].shape:
                    buffer.copy_(saved[name])
    return program, decided


@contextmanager
def kept_attributes(module: Any) -> Iterator[None]:
    """While open, what the module and its submodules hold as plain attributes may change (transformers' Qwen2-VL
    keeps `rope_deltas` from a call: a trace leaves a symbolic tensor there, and the next call, the path's run, then
    takes the cached branch); on leaving each is put back as it was, added ones removed."""
    held = [(m, {k: v for k, v in vars(m).items() if not k.startswith("_")}) for m in module.modules()]
    try:
        yield
    finally:
        for m, before in held:
            for key in [k for k in vars(m) if not k.startswith("_") and k not in before]:
                delattr(m, key)
            for key, value in before.items():
                if vars(m).get(key, value) is not value or key not in vars(m):
                    m.__dict__[key] = value


def sized_by_values(torch: Any, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    program: Any) -> tuple[Any, list[decisions.Decision]]:
    """A program torch.export traced with sizes only the values decide (Idefics3 drops its padding images by a mask
    of their pixels: x[mask] of u0 rows) read along the path these inputs take instead, every such size a number
    (`decisions`); the program as it is, with no decisions, where that path cannot be traced (its ops of such sizes
    are then unsupported, by name, as before)."""
    if not decisions.undecided_sizes(program):
        return program, []
    try:
        return along_its_path(torch, module, args, kwargs, "")
    except ModelFormatError:
        return program, []


@contextmanager
def plain_outputs(module: Any) -> Iterator[dict[str, Any]]:
    """While open, `module` returns the tensors of whatever structure its forward returns (a namedtuple like
    GoogLeNet's logits and auxiliary heads, a dict, nested tuples) as one flat tuple, which torch.export traces and
    serialises whatever the class (a namedtuple torch has no name registered for cannot be serialised); the dict it
    yields gets, once the module has run, "returns": the name of each, as the structure names it ("aux_logits1",
    "boxes.0"; positions alone name nothing). A subclass of its own class, as `scores_only` makes."""
    from torch.utils import _pytree as pytree

    cls = type(module)
    picked: dict[str, Any] = {"gives": ""}

    @functools.wraps(cls.forward)  # its signature: torch.export names the inputs after it
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = cls.forward(self, *args, **kwargs)
        leaves, _ = pytree.tree_flatten_with_path(out)
        tensors = [(path, leaf) for path, leaf in leaves if hasattr(leaf, "dim")]
        if len(tensors) == 1 and tensors[0][1] is out:
            return out
        names = [".".join(_key_name(k) for k in path) for path, _ in tensors]
        if any(not all(isinstance(k, pytree.SequenceKey) for k in path) for path, _ in tensors):
            picked["returns"] = names
        return tuple(leaf for _, leaf in tensors)

    module.__class__ = type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__})
    try:
        yield picked
    finally:
        module.__class__ = cls


def _key_name(key: Any) -> str:
    """One step of a pytree key path as a name: a field's or key's name, a position's number."""
    for attribute in ("name", "key", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _arguments(torch: Any, module: Any, inputs: Any, what: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments `inputs` stands for, NumPy arrays made tensors on the module's device
    (floating ones in the module's floating dtype, as a NumPy float64 batch meets a float32 model)."""
    if inputs is None:
        raise ModelFormatError(f"{what}: a module is traced on the inputs it is called with: {USAGE}")
    tensors = [*module.parameters(), *module.buffers()]
    dtype = next((p.dtype for p in tensors if p.is_floating_point()), torch.get_default_dtype())
    device = tensors[0].device if tensors else torch.device("cpu")

    def tensor(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise ModelFormatError(f"{what}: an input array holds {value.dtype} values, not numbers")
            value = torch.from_numpy(np.ascontiguousarray(value)).to(device)  # where the module's weights are
            return value.to(dtype) if value.is_floating_point() else value
        return value

    if isinstance(inputs, Mapping):
        if not all(isinstance(k, str) for k in inputs):
            raise ModelFormatError(f"{what}: inputs given as a dict are named by the module's argument names")
        return (), {k: tensor(v) for k, v in inputs.items()}
    if isinstance(inputs, tuple | list):
        return tuple(tensor(v) for v in inputs), {}
    return (tensor(inputs),), {}
