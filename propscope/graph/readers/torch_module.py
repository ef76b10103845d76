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
    if transformers and "use_cache" in inspect.signature(target.forward).parameters:
        kwargs.setdefault("use_cache", False)  # one pass over the whole sequence: no key/value cache to return
    mode = "training" if target.training else "evaluation"
    outputs = transformers_checkpoint.scores_only(target) if transformers else \
        diffusers_checkpoint.sample_only(target) if diffusers else plain_outputs(target)
    decided: list[decisions.Decision] = []
    with outputs as picked:
        try:
            with quiet_torch():
                program = torch.export.export(target, args, kwargs)
        except Exception as exc:  # torch.export's messages run to pages: their first line says what stopped it
            refusal = f"{what}: torch.export could not trace it on these inputs ({first_line(exc, 160)})"
            program, decided = _along_its_path(torch, target, args, kwargs, refusal)
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
        opened.decisions = tuple(d.text() for d in decided)
        opened.warnings.append(decisions.summary(decided))
        opened.description += f", along the path these inputs take ({len(decided)} decisions by value)"
    if diffusers:
        diffusers_checkpoint.default_loss(opened, type(target))
    return opened


def _along_its_path(torch: Any, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    refusal: str) -> tuple[Any, list[decisions.Decision]]:
    """The program of the path these inputs take through a forward that decides by values (`decisions`), checked
    to compute what the module does; `refusal` (torch.export's own reason) where the forward decides nothing by
    value or the path cannot be replayed. The module's buffers (batch norm's running statistics) and the random
    state are left as they were; a dropout draws the same in the run and in the check."""
    saved = {name: buffer.detach().clone() for name, buffer in module.named_buffers()}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            decided, expected = decisions.record(module, args, kwargs)
            if not decided:
                raise ModelFormatError(refusal)
            with quiet_torch(), decisions.replaying(decided):
                program = torch.export.export(module, args, kwargs)
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
