"""How much of torch's Core ATen opset and of ONNX's operators propscope reads (`propscope ops --coverage`).

torch tags its canonical operator set `torch.Tag.core` (about 160 ops, the set ExecuTorch backends
implement). Each is **mapped** (a reader handler turns it into catalog ops), **folded** (it only ever
computes constants here: masks, position ids, comparisons; the reader evaluates it at load time and
steps through what remains), **unsupported** (it opens as a placeholder that stops stepping), or **out of
scope** for a float network's forward pass (backward kernels, random numbers, complex FFTs, dynamic-shape
plumbing), each with its reason. `rand` and `randn` are folded: a draw of a fixed shape (drop path's, a VAE's noise)
is made once when the model is read, seeded, as dropout's mask is. The same for ONNX's default-domain operators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MAPPED, FOLDED, UNSUPPORTED, OUT_OF_SCOPE = "mapped", "folded", "unsupported", "out of scope"

# Core ATen ops no float forward pass of a network uses, and why.
ATEN_OUT_OF_SCOPE: dict[str, str] = {
    "randperm": "random numbers (not a function of the inputs)",
    "_fft_r2c": "complex-valued (FFT)",
    "_fft_c2r": "complex-valued (FFT)",
    "_local_scalar_dense": "reads a tensor into Python during tracing (data-dependent control flow)",
    "sym_size": "dynamic-shape plumbing (propscope reads the static sizes the file records)",
    "sym_numel": "dynamic-shape plumbing (propscope reads the static sizes the file records)",
    "sym_stride": "dynamic-shape plumbing (propscope reads the static sizes the file records)",
    "sym_storage_offset": "dynamic-shape plumbing (propscope reads the static sizes the file records)",
    "sym_is_contiguous": "dynamic-shape plumbing (propscope reads the static sizes the file records)",
}
ONNX_OUT_OF_SCOPE_PREFIXES: dict[str, str] = {
    "Random": "random numbers", "Bernoulli": "random numbers", "Multinomial": "random numbers",
    "String": "strings", "Regex": "strings", "Sequence": "sequence types", "Split to": "sequence types",
    "Optional": "optional types", "Loop": "control flow", "Scan": "control flow",
    "Image": "image decoding", "DFT": "complex-valued (FFT)", "STFT": "complex-valued (FFT)",
    "BitShift": "integer-only", "Bitwise": "integer-only", "Hamming": "signal windows", "Hann": "signal windows",
    "Blackman": "signal windows", "MelWeight": "signal processing", "TfIdf": "text",
}


@dataclass
class Coverage:
    """One opset's ops by status, each with the reason where it is not mapped."""

    opset: str
    status: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def names(self, status: str) -> list[str]:
        return sorted(n for n, s in self.status.items() if s == status)

    @property
    def in_scope(self) -> int:
        return sum(1 for s in self.status.values() if s != OUT_OF_SCOPE)

    @property
    def covered(self) -> int:
        return sum(1 for s in self.status.values() if s in (MAPPED, FOLDED))

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / max(self.in_scope, 1)

    def summary(self) -> str:
        counts = {s: len(self.names(s)) for s in (MAPPED, FOLDED, UNSUPPORTED, OUT_OF_SCOPE)}
        return (f"{self.opset}: {self.covered} of {self.in_scope} in scope ({self.percent:.0f}%): "
                f"{counts[MAPPED]} mapped, {counts[FOLDED]} folded, {counts[UNSUPPORTED]} unsupported; "
                f"{counts[OUT_OF_SCOPE]} out of scope")


def core_aten_ops() -> list[str]:
    """The names of the ATen ops the installed torch tags `core` (imports torch)."""
    import torch

    names = set()
    for name in dir(torch.ops.aten):
        try:
            packet = getattr(torch.ops.aten, name)
            overloads = packet.overloads()
        except (AttributeError, RuntimeError, TypeError):
            continue
        for overload in overloads:
            try:
                if torch.Tag.core in getattr(packet, overload).tags:
                    names.add(name)
                    break
            except (AttributeError, RuntimeError):
                continue
    return sorted(names)


def _classify(names: Iterable[str], handlers: dict[str, Callable[..., Any]], folding_modules: tuple[str, ...],
              out_of_scope: Callable[[str], str | None], opset: str) -> Coverage:
    cov = Coverage(opset)
    for name in names:
        reason = out_of_scope(name)
        handler = handlers.get(name)
        if reason is not None and handler is None:
            cov.status[name], cov.reasons[name] = OUT_OF_SCOPE, reason
        elif handler is None:
            cov.status[name], cov.reasons[name] = UNSUPPORTED, "no handler"
        elif handler.__module__.rsplit(".", 1)[-1] in folding_modules:
            cov.status[name], cov.reasons[name] = FOLDED, "evaluated at load time (constants only)"
        else:
            cov.status[name] = MAPPED
    return cov


def aten_coverage(names: Iterable[str] | None = None) -> Coverage:
    from . import aten  # noqa: F401  (registers the handlers)
    from ._aten import HANDLERS

    def out_of_scope(name: str) -> str | None:
        if name.endswith("_backward"):
            return "a backward kernel (propscope computes gradients itself)"
        if (name.endswith("3d") or "_3d" in name or name.endswith("3d_with_indices")) and name not in HANDLERS:
            return ("a 3-D (volumetric) layer the catalog does not have yet (it has conv3d, conv_transpose3d and "
                    "3-D pools)")
        return ATEN_OUT_OF_SCOPE.get(name)

    return _classify(core_aten_ops() if names is None else names, HANDLERS, ("constants",), out_of_scope,
                     "Core ATen (torch.Tag.core)")


def onnx_operators() -> list[str]:
    """The current operators of ONNX's default domain (imports onnx)."""
    import onnx.defs

    return sorted({s.name for s in onnx.defs.get_all_schemas() if s.domain in ("", "ai.onnx") and not s.deprecated})


def onnx_coverage(names: Iterable[str] | None = None) -> Coverage:
    from .onnx_reader import HANDLERS

    def out_of_scope(name: str) -> str | None:
        for prefix, reason in ONNX_OUT_OF_SCOPE_PREFIXES.items():
            if name.startswith(prefix.split()[0]):
                return reason
        return None

    # an If is decided when the file is read (its condition a folded constant) and refused otherwise: folded
    return _classify(onnx_operators() if names is None else names, HANDLERS, ("constants", "control"), out_of_scope,
                     "ONNX (ai.onnx)")


def report(cov: Coverage, verbose: bool = True) -> str:
    """The text `propscope ops --coverage` prints for one opset."""
    lines = [cov.summary()]
    if verbose:
        for status in (UNSUPPORTED, FOLDED, OUT_OF_SCOPE):
            names = cov.names(status)
            if names:
                lines.append(f"  {status} ({len(names)}): {', '.join(names)}")
    return "\n".join(lines)
