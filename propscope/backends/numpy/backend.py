"""The NumPy backend: our own kernels, every derivative written by hand (the teaching content)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...graph.errors import UnsupportedOpError
from ...graph.ir import Graph, Node
from ..base import check_dtype
from .kernels import KERNELS, Array, Kernel


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

    def forward(self, node: Node, inputs: Sequence[Array]) -> Array:
        with np.errstate(all="ignore"):  # non-finite values are reported by the debugger, not as warnings
            return np.asarray(kernel_for(node).forward(*inputs, **node.attrs))

    def vjp(self, node: Node, inputs: Sequence[Array], output: Array, grad_output: Array) -> list[Array | None]:
        with np.errstate(all="ignore"):
            grads = kernel_for(node).vjp(grad_output, list(inputs), output, dict(node.attrs))
        return [None if g is None or not node.op.differentiable(i) else np.asarray(g) for i, g in enumerate(grads)]

    def partials(self, node: Node, inputs: Sequence[Array], output: Array) -> list[Array | None] | None:
        with np.errstate(all="ignore"):
            parts = kernel_for(node).partials(list(inputs), output, dict(node.attrs))
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
    cost no matrix product in the backward pass.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.leaf_slots = {n.name: n.index for n in graph.leaves}
        self.size = len(graph)
        self.forward_plan = [
            (kernel_for(n).forward, tuple(a.index for a in n.inputs), n.index, dict(n.attrs)) for n in graph.ops
        ]
        self.output = graph.output.index
        self._backward_plans: dict[tuple[str, ...], list[Any]] = {}
        self._seed: Array | None = None

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
                plan.append((kernel_for(n).vjp, tuple(a.index for a in n.inputs), n.index, dict(n.attrs), needs))
            self._backward_plans[key] = plan
        return self._backward_plans[key]

    def _run(self, leaves: Mapping[str, Array]) -> list[Any]:
        values: list[Any] = [None] * self.size
        for name, slot in self.leaf_slots.items():
            values[slot] = leaves[name]
        for forward, args, out, attrs in self.forward_plan:
            values[out] = forward(*[values[i] for i in args], **attrs)
        return values

    def predict(self, leaves: Mapping[str, Array]) -> Array:
        with np.errstate(all="ignore"):
            return np.asarray(self._run(leaves)[self.output])

    def loss_and_grads(self, leaves: Mapping[str, Array], wrt: Sequence[str]) -> tuple[Array, dict[str, Array]]:
        plan = self._backward_plan(wrt)
        with np.errstate(all="ignore"):
            values = self._run(leaves)
            loss = values[self.output]
            if self._seed is None or self._seed.dtype != loss.dtype or self._seed.shape != np.shape(loss):
                self._seed = np.ones_like(loss)  # read-only use: every gradient below is a new array
            grads: list[Any] = [None] * self.size
            grads[self.output] = self._seed
            for vjp, args, out, attrs, needs in plan:
                g = grads[out]
                if g is None:
                    continue
                for slot, wanted, contribution in zip(
                    args, needs, vjp(g, [values[i] for i in args], values[out], attrs, needs), strict=True
                ):
                    if wanted and contribution is not None:
                        grads[slot] = contribution if grads[slot] is None else grads[slot] + contribution
        return loss, {name: grads[self.leaf_slots[name]] for name in wrt}
