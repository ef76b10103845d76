"""The NumPy backend: our own kernels, every derivative written by hand (the teaching content)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from ...graph.errors import UnsupportedOpError
from ...graph.ir import Graph, Node
from ..base import check_dtype
from .kernels import KERNELS, Array, Kernel, times, unbroadcast


def kernel_for(node: Node) -> Kernel:
    try:
        return KERNELS[node.op.name]
    except KeyError:
        raise UnsupportedOpError(
            f"the NumPy backend has no kernel for op {node.op.name!r} (node {node.name!r})"
        ) from None


class NumpyBackend:
    name = "numpy"
    device = "cpu"

    def __init__(self, dtype: str = "float32") -> None:
        self.dtype = check_dtype(dtype)
        self._np_dtype = np.dtype(dtype)

    def asarray(self, value: Any) -> Array:
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" or arr.dtype == np.bool_:
            return np.array(arr, dtype=self._np_dtype)
        return np.array(arr)

    def to_numpy(self, value: Any) -> Array:
        return np.asarray(value)

    def _args(self, node: Node, inputs: Sequence[Array]) -> list[Array]:
        """Inputs as the kernel takes them: integer data at a differentiable position (an argmax result
        multiplied into floats, an integer exponent) becomes the session's float dtype, as on torch."""
        args = list(inputs)
        for i, x in enumerate(args):
            if getattr(x, "dtype", None) is not None and x.dtype.kind in "biu" and node.op.differentiable(i):
                args[i] = x.astype(self._np_dtype)
        return args

    def forward(self, node: Node, inputs: Sequence[Array]) -> Array:
        with np.errstate(all="ignore"):  # non-finite values are reported by the debugger, not as warnings
            return np.asarray(kernel_for(node).forward(*self._args(node, inputs), **node.attrs))

    def vjp(self, node: Node, inputs: Sequence[Array], output: Array, grad_output: Array) -> list[Array | None]:
        with np.errstate(all="ignore"):
            grads = kernel_for(node).vjp(grad_output, self._args(node, inputs), output, dict(node.attrs))
        return [None if g is None or not node.op.differentiable(i) else np.asarray(g) for i, g in enumerate(grads)]

    def partials(self, node: Node, inputs: Sequence[Array], output: Array) -> list[Array | None] | None:
        with np.errstate(all="ignore"):
            parts = kernel_for(node).partials(self._args(node, inputs), output, dict(node.attrs))
        return None if parts is None else [None if p is None else np.asarray(p) for p in parts]

    def ones(self, shape: tuple[int, ...]) -> Array:
        return np.ones(shape, dtype=self._np_dtype)

    def is_finite(self, value: Array) -> bool:
        return bool(np.isfinite(value).all())

    def norm(self, value: Array) -> float:
        return float(np.linalg.norm(np.ravel(value)))

    def compile(self, graph: Graph) -> NumpyProgram:
        return NumpyProgram(graph)

    def __repr__(self) -> str:
        return f"NumpyBackend({self.dtype})"


class NumpyProgram:
    """The graph flattened into slot-indexed calls: the training loop's fast path, no trace kept.

    Gradients are computed only where they lead to a requested leaf (`wrt`), so data inputs
    cost no matrix product in the backward pass. For a small network the Python around each
    kernel costs as much as the kernel, so the plans call each kernel's own functions directly
    and gather their inputs with `itemgetter` (in C; a comprehension is a Python frame in 3.11).
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.leaf_slots = {n.name: n.index for n in graph.leaves}
        self.size = len(graph)
        self.forward_plan = [
            (kernel_for(n).forward, _gather(n), len(n.inputs) == 1, n.index, dict(n.attrs)) for n in graph.ops
        ]
        self.output = graph.output.index
        self.slots = {n.name: n.index for n in graph}
        self._backward_plans: dict[tuple[str, ...], list[Any]] = {}
        self._seed: Array | None = None
        self._values: list[Any] = []

    def _backward_plan(self, wrt: Sequence[str]) -> list[Any]:
        key = tuple(wrt)
        if key not in self._backward_plans:
            leads = set(wrt)  # nodes whose gradient someone needs: the requested leaves and ops above them
            for n in self.graph.ops:
                if any(a.name in leads for a in n.inputs):
                    leads.add(n.name)
            plan = []
            for n in reversed(self.graph.ops):
                if n.name not in leads:
                    continue
                needs = tuple(n.op.differentiable(i) and a.name in leads for i, a in enumerate(n.inputs))
                kernel, attrs = kernel_for(n), dict(n.attrs)
                # what Kernel.vjp would do, decided once here instead of on every call
                elementwise = kernel._vjp is None
                if not elementwise and kernel._vjp_skips:
                    attrs["needs"] = needs
                rule = kernel._local if elementwise else kernel._vjp
                args = tuple(a.index for a in n.inputs)
                # per input: (slot, gradient wanted, shape a contribution is summed back to)
                targets = tuple(zip(args, needs, (a.shape for a in n.inputs), strict=True))
                selects = kernel if elementwise and kernel.selects else None  # its `kept` masks the products
                plan.append((elementwise, rule, _gather(n), len(args) == 1, targets, n.index, attrs, selects))
            self._backward_plans[key] = plan
        return self._backward_plans[key]

    def _run(self, leaves: Mapping[str, Array]) -> list[Any]:
        values: list[Any] = [None] * self.size
        for name, slot in self.leaf_slots.items():
            values[slot] = leaves[name]
        for forward, gather, single, out, attrs in self.forward_plan:
            values[out] = forward(gather(values), **attrs) if single else forward(*gather(values), **attrs)
        self._values = values
        return values

    def value(self, name: str) -> Array:
        """Node `name`'s value in the last run: the trainer's metrics read the prediction of the loss's own pass."""
        return self._values[self.slots[name]]

    def predict(self, leaves: Mapping[str, Array]) -> Array:
        with np.errstate(all="ignore"):
            return np.asarray(self._run(leaves)[self.output])

    def loss_and_grads(self, leaves: Mapping[str, Array], wrt: Sequence[str]) -> tuple[Array, dict[str, Array]]:
        with np.errstate(all="ignore"):
            return self.loss_and_grads_raw(leaves, wrt)

    def loss_and_grads_raw(self, leaves: Mapping[str, Array], wrt: Sequence[str]) -> tuple[Array, dict[str, Array]]:
        """`loss_and_grads` for a caller already inside `np.errstate(all="ignore")` (the trainer's loop)."""
        plan = self._backward_plan(wrt)
        values = self._run(leaves)
        loss = values[self.output]
        grads: list[Any] = [None] * self.size
        for elementwise, rule, gather, single, targets, out, attrs, selects in plan:
            inputs = (gather(values),) if single else gather(values)
            if out == self.output:  # dL/dL = 1: an elementwise rule's contribution is its local derivative itself
                g = None
            else:
                g = grads[out]
                if g is None:
                    continue
            if elementwise:
                parts = rule(*inputs, values[out], **attrs)
                if g is None:  # a gradient is always a new array, never one of the values
                    parts = [
                        np.array(p) if p is not None and (not isinstance(p, np.ndarray) or any(p is v for v in inputs))
                        else p
                        for p in parts
                    ]
            else:
                parts = rule(self._ones_like(loss) if g is None else g, *inputs, values[out], **attrs)
            keeps = None if selects is None else selects.kept(inputs, values[out], attrs, parts)
            for i, ((slot, wanted, shape), p) in enumerate(zip(targets, parts)):  # noqa: B905  (training's hot loop)
                if not wanted or p is None:
                    continue
                if elementwise:
                    if keeps is not None:
                        p = times(p if g is None else g, 1 if g is None else p, keeps[i])
                    elif g is not None:
                        p = g * p
                    if p.shape != shape:
                        p = unbroadcast(p, shape)
                prev = grads[slot]
                grads[slot] = p if prev is None else prev + p
        return loss, {name: grads[self.leaf_slots[name]] for name in wrt}

    def _ones_like(self, loss: Array) -> Array:
        if self._seed is None or self._seed.dtype != loss.dtype or self._seed.shape != np.shape(loss):
            self._seed = np.ones_like(loss)  # read-only use: every gradient below is a new array
        return self._seed


def _gather(node: Node) -> Callable[[list[Any]], Any]:
    """values -> the node's inputs: the value itself for one input, else a tuple."""
    if not node.inputs:
        return lambda values: ()
    return itemgetter(*(a.index for a in node.inputs))
