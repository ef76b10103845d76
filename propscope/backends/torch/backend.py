"""The PyTorch backend: every op's forward in torch ops, every gradient from `torch.autograd`.

No derivative is written here. Each node's forward runs on detached copies of its inputs with
autograd recording, and its backward step asks `torch.autograd.grad` for the vector-Jacobian
product of that record (kept beside the output, or recomputed when it is gone), so where this
backend agrees with the NumPy one (whose derivatives are written by hand) the agreement is
evidence, not a repetition. The kernel table (one module per op family beside this one) is the
NumPy one's twin: one short torch function per catalog op, nothing else. Values stay tensors on the
chosen device; `to_numpy` copies them to the host only when someone looks.

torch is imported only inside this package, which propscope imports lazily
(`propscope.backends.get_backend("torch", ...)`, `optimizer_for`), so propscope runs without it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from torch.utils.weak import WeakTensorKeyDictionary

from ...graph.ir import Graph, Node
from ..base import BackendError, check_dtype
from .kernels import Tensor, kernel_for


# -- devices ---------------------------------------------------------------------------------
def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot be used here, in words, or None when it can."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"this PyTorch ({torch.__version__}) was built without CUDA support"
    return "no CUDA device was found (check the driver and CUDA_VISIBLE_DEVICES)"


def available_devices() -> list[str]:
    """The devices this backend can run on here: cpu, then cuda:0, cuda:1, ..."""
    if cuda_unavailable_reason() is not None:
        return ["cpu"]
    return ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]


def resolve_device(device: str) -> torch.device:
    """`cpu`, `cuda` or `cuda:N` as a torch.device, or a BackendError saying what is wrong."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise BackendError(f"unknown device {device!r}; choose cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise BackendError(f"the torch backend runs on cpu or cuda, not {device!r}")
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise BackendError(f"CUDA is not available: {reason}; use --device cpu")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise BackendError(f"there is no CUDA device {dev.index} here, only cuda:0 to cuda:{count - 1}")
    return dev


@contextmanager
def exact_float32() -> Iterator[None]:
    """TF32 off for cuDNN convolutions and CUDA matmuls while inside: float32 then means float32, as on
    the CPU and in NumPy (cuDNN's TF32 default would differ from NumPy by ~1e-3). Restored after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# -- the backend -----------------------------------------------------------------------------
class TorchBackend:
    name = "torch"

    def __init__(self, dtype: str = "float32", device: str = "cpu", keep_graph: bool = True) -> None:
        self.dtype = check_dtype(dtype)
        self.torch_dtype: torch.dtype = getattr(torch, dtype)
        self.torch_device = resolve_device(device)
        self.device = str(self.torch_device)
        # keep_graph: each forward's autograd record lives as long as its output (its saved tensors are
        # mostly the inputs the trace keeps anyway), so a backward step is one autograd.grad call
        self.keep_graph = keep_graph
        self._tape: Any = WeakTensorKeyDictionary()
        self._cuda = self.torch_device.type == "cuda"

    def exact(self) -> AbstractContextManager[None]:
        """Where kernels and gradients run: with TF32 off on CUDA (see `exact_float32`)."""
        return exact_float32() if self._cuda else nullcontext()

    # -- arrays ----------------------------------------------------------------------------
    def asarray(self, value: Any) -> Tensor:
        """Floats and booleans in the backend's dtype; integers (class indices) stay integers."""
        # np.array copies: a later edit of the caller's array must not leak into the trace
        t = value.detach() if isinstance(value, Tensor) else torch.from_numpy(np.array(value, order="C"))
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            return t.to(device=self.torch_device, dtype=self.torch_dtype)
        return t.to(device=self.torch_device)

    def to_numpy(self, value: Any) -> np.ndarray:
        if isinstance(value, Tensor):
            return value.detach().cpu().numpy()
        return np.asarray(value)

    def ones(self, shape: tuple[int, ...]) -> Tensor:
        return torch.ones(shape, dtype=self.torch_dtype, device=self.torch_device)

    def is_finite(self, value: Tensor) -> bool:
        # A finite sum means every element is finite, and costs far less than isfinite(value).all();
        # only an overflowing sum of finite values needs the exact check.
        return math.isfinite(value.sum().item()) or bool(torch.isfinite(value).all())

    def norm(self, value: Tensor) -> float:
        return float(torch.linalg.vector_norm(value.to(self.torch_dtype)))

    def _args(self, node: Node, inputs: Sequence[Any]) -> list[Tensor]:
        """Inputs as tensors; integer data at a differentiable position becomes float (it has a gradient)."""
        out = []
        for i, x in enumerate(inputs):
            t = x if isinstance(x, Tensor) else self.asarray(x)
            if not t.is_floating_point() and _differentiable(node)[i]:
                t = t.to(self.torch_dtype)
            out.append(t)
        return out

    # -- one node --------------------------------------------------------------------------
    def forward(self, node: Node, inputs: Sequence[Any]) -> Tensor:
        """The node's output, detached. With `keep_graph`, autograd's record of this forward is kept
        beside it (weakly keyed by the output tensor), so its backward step runs no second forward."""
        if not self.keep_graph:
            with torch.no_grad(), self.exact():
                return kernel_for(node)(*self._args(node, inputs), **node.attrs)
        record = self._record(node, self._args(node, inputs))
        value = record.out.detach()
        if record.out.requires_grad:  # the entry goes when `value` goes (with its trace)
            self._tape[value] = (tuple(inputs), record)
        return value

    def vjp(self, node: Node, inputs: Sequence[Any], output: Any, grad_output: Any) -> list[Tensor | None]:
        """dL/d(input) by `torch.autograd.grad` on the node's forward (kept, or re-run on detached inputs)."""
        kept = self._tape.get(output) if isinstance(output, Tensor) else None
        if kept is not None and _same(kept[0], inputs):
            return kept[1].grads(grad_output, retain=True)  # retained: explain asks again, row by row
        return self._record(node, self._args(node, inputs)).grads(grad_output)

    def partials(self, node: Node, inputs: Sequence[Any], output: Any) -> list[Tensor | None] | None:
        """Elementwise ∂out/∂input, or ∂L/∂input for a scalar loss; None for other ops.

        For an elementwise op, out[i] depends on in[i] only, so the VJP of a ones upstream on inputs
        first broadcast to the output's shape is exactly the elementwise derivative.
        """
        args = self._args(node, inputs)
        if node.op.elementwise:
            shape = tuple(output.shape)
            args = [t.broadcast_to(shape).clone() if t.is_floating_point() else t for t in args]
            return self._record(node, args).grads(self.ones(shape))
        if node.op.is_loss:
            return self._record(node, args).grads(self.ones(()))
        return None

    def _record(self, node: Node, args: list[Tensor]) -> _Record:
        """Run the node's forward on detached copies of its inputs, autograd recording."""
        wanted = [d and t.is_floating_point() for d, t in zip(_differentiable(node), args, strict=True)]
        leaves = [t.detach().requires_grad_(w) for t, w in zip(args, wanted, strict=True)]
        with torch.enable_grad(), self.exact():
            out = kernel_for(node)(*leaves, **node.attrs)
        return _Record(out, [t for t, w in zip(leaves, wanted, strict=True) if w], wanted, self)

    def compile(self, graph: Graph) -> TorchProgram:
        return TorchProgram(self, graph)

    def __repr__(self) -> str:
        return f"TorchBackend({self.dtype}, {self.device})"


_DIFFERENTIABLE: dict[tuple[str, int], tuple[bool, ...]] = {}


def _differentiable(node: Node) -> tuple[bool, ...]:
    """Which inputs of the node take a gradient (a loss's target does not); asked at every step, so cached."""
    key = (node.op.name, len(node.inputs))
    if key not in _DIFFERENTIABLE:
        _DIFFERENTIABLE[key] = tuple(node.op.differentiable(i) for i in range(len(node.inputs)))
    return _DIFFERENTIABLE[key]


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class _Record:
    """One recorded forward: its output, the autograd leaves it came from, and which inputs those are."""

    __slots__ = ("backend", "out", "sources", "wanted")

    def __init__(self, out: Tensor, sources: list[Tensor], wanted: list[bool], backend: TorchBackend) -> None:
        self.out, self.sources, self.wanted, self.backend = out, sources, wanted, backend

    def grads(self, grad_output: Any, retain: bool = False) -> list[Tensor | None]:
        if not self.sources:
            return [None] * len(self.wanted)
        if self.out.requires_grad:
            upstream = grad_output if isinstance(grad_output, Tensor) else self.backend.asarray(grad_output)
            # contiguous: torch 2.13's CPU batch-norm backward misreads a gradient laid out channels-last whose
            # batch axis of 1 has a stride other than C·H·W (what a transpose's VJP hands on, as in timm's
            # EfficientFormer): its weight, bias and input gradients came out wrong, unlike central differences
            upstream = upstream.contiguous()
            with self.backend.exact():
                found = iter(torch.autograd.grad(self.out, self.sources, upstream, retain_graph=retain,
                                                 allow_unused=True, materialize_grads=True))
        else:  # the op has no derivative anywhere (step): autograd's answer is "nothing flows", i.e. zeros
            found = iter([torch.zeros_like(t) for t in self.sources])
        return [next(found) if w else None for w in self.wanted]


class TorchProgram:
    """The whole graph in one autograd pass: the training loop's fast path, no trace kept."""

    def __init__(self, backend: TorchBackend, graph: Graph) -> None:
        self.backend = backend
        self.graph = graph
        self.leaf_slots = {n.name: n.index for n in graph.leaves}
        self.size = len(graph)
        self.plan = [
            (kernel_for(n), n, tuple(a.index for a in n.inputs), n.index, dict(n.attrs)) for n in graph.ops
        ]
        self.output = graph.output.index
        self.slots = {n.name: n.index for n in graph}
        self._values: list[Any] = []

    def value(self, name: str) -> Tensor:
        """Node `name`'s value in the last run (the trainer reads the prediction beside the loss)."""
        return self._values[self.slots[name]].detach()

    def _run(self, leaves: Mapping[str, Any], wrt: Collection[str] = ()) -> tuple[Tensor, dict[str, Tensor]]:
        """Forward through every op; the leaves named in `wrt` become fresh autograd leaves."""
        values: list[Any] = [None] * self.size
        self._values = values
        sources: dict[str, Tensor] = {}
        for name, slot in self.leaf_slots.items():
            t = self.backend.asarray(leaves[name])
            if name in wrt:
                t = sources[name] = t.detach().requires_grad_(True)
            values[slot] = t
        for fn, node, args, out, attrs in self.plan:
            values[out] = fn(*self.backend._args(node, [values[i] for i in args]), **attrs)
        return values[self.output], sources

    def predict(self, leaves: Mapping[str, Any]) -> Tensor:
        with torch.no_grad(), self.backend.exact():
            return self._run(leaves)[0]

    def loss_and_grads(
        self, leaves: Mapping[str, Any], wrt: Sequence[str]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss and dL/d(leaf) for each leaf in `wrt`, from one forward and one `torch.autograd.grad`."""
        with torch.enable_grad(), self.backend.exact():
            loss, sources = self._run(leaves, set(wrt))
            ordered = [sources[name] for name in wrt]
            if loss.requires_grad:
                grads = torch.autograd.grad(loss, ordered, allow_unused=True, materialize_grads=True)
            else:  # nothing differentiable leads to the loss (a step network): no gradient flows
                grads = tuple(torch.zeros_like(t) for t in ordered)
        return loss.detach(), dict(zip(wrt, grads, strict=True))
