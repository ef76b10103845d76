"""einsum, as the steps it is made of: sums, transposes, reshapes and batched matrix products.

torch.einsum (MaxViT's relative attention) and ONNX's Einsum are not catalog ops: each is read as the
contraction it computes, one pair of operands at a time, the way torch's own einsum runs it. Per pair, the
letters both share and the output (or a later operand) keeps are the batch; the letters both share and
nothing keeps are summed by the product; the rest stay free. A letter only one operand has and nothing
keeps is summed away first. Every step is an ordinary op with its hand-written derivative.

A letter repeated within one operand ("ii->i", "...ii->...i": a diagonal, or a trace where nothing keeps it) is
taken once first: the operand times an identity mask over those two axes, summed over the second, so its gradient
is the mask's. Not read (the op stays unsupported, named): operands whose shared letters have different sizes
(broadcasting a size-1 axis).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from string import ascii_letters

import numpy as np

from ..ir import Node
from ._budget import array_room
from ._build import Builder


class EinsumUnmapped(ValueError):
    """An equation this reading does not cover (its message says what)."""


def parse(equation: str, ranks: Sequence[int]) -> tuple[list[str], str]:
    """The operands' labels and the output's, with "..." spelt out as letters the equation leaves unused."""
    text = equation.replace(" ", "")
    lhs, arrow, rhs = text.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise EinsumUnmapped(f"einsum {equation!r} names {len(terms)} operands, given {len(ranks)}")
    free = [c for c in ascii_letters if c not in text]
    widest = max((rank - (len(term) - 3) for term, rank in zip(terms, ranks, strict=True) if "..." in term),
                 default=0)
    spare = "".join(free[:widest])
    labels = []
    for term, rank in zip(terms, ranks, strict=True):
        if "..." in term:
            width = rank - (len(term) - 3)
            if width != widest:
                raise EinsumUnmapped(f"einsum {equation!r}: operands with \"...\" of different ranks (broadcast)")
            term = term.replace("...", spare)
        if len(term) != rank or not all(c in ascii_letters for c in term):
            raise EinsumUnmapped(f"einsum {equation!r}: {term!r} does not fit an operand of rank {rank}")
        labels.append(term)
    if arrow:
        out = rhs.replace("...", spare)
    else:  # implicit: "..." first, then every letter used once, in alphabetical order
        counts = "".join(labels)
        out = spare + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in spare))
    if len(set(out)) != len(out) or any(c not in "".join(labels) for c in out):
        raise EinsumUnmapped(f"einsum {equation!r}: output {out!r} names a letter twice or one no operand has")
    return labels, out


def fold(equation: str, arrays: Sequence[np.ndarray], what: str, where: str) -> np.ndarray:
    """einsum of constants, evaluated at load time; its result checked against the memory budget first."""
    labels, out = parse(equation, [x.ndim for x in arrays])
    sizes = {c: d for term, x in zip(labels, arrays, strict=True) for c, d in zip(term, x.shape, strict=True)}
    array_room([sizes[c] for c in out], np.result_type(*arrays), what, where)
    return np.einsum(equation, *arrays)


def einsum(b: Builder, equation: str, operands: Sequence[Node], name: str, module: str = "") -> Node:
    """The graph of `einsum(equation, *operands)`, its last step named `name`."""
    labels, out = parse(equation, [len(n.shape) for n in operands])
    sizes: dict[str, int] = {}
    for term, node in zip(labels, operands, strict=True):
        for c, d in zip(term, node.shape, strict=True):
            if sizes.setdefault(c, d) != d:
                raise EinsumUnmapped(f"einsum {equation!r}: {c!r} is {sizes[c]} in one operand and {d} in another")
    steps = _Steps(b, name, module, sizes)
    taken = [steps.diagonal(node, term) for node, term in zip(operands, labels, strict=True)]
    operands, labels = [n for n, _ in taken], [t for _, t in taken]
    node, have = operands[0], labels[0]
    for i in range(1, len(operands)):
        later = set(out).union(*labels[i + 1:])
        node, have = steps.reduce(node, have, set(labels[i]) | later)
        other, theirs = steps.reduce(operands[i], labels[i], set(have) | later)
        node, have = steps.contract(node, have, other, theirs, later)
    node, have = steps.reduce(node, have, set(out))
    return steps.arrange(node, have, out, last=True)


class _Steps:
    """The ops one einsum is made of, named after it: NAME.sum, NAME.a, NAME.b, NAME.mm, ... and NAME last."""

    def __init__(self, b: Builder, name: str, module: str, sizes: dict[str, int]) -> None:
        self.b, self.name, self.module, self.sizes = b, name, module, sizes

    def _op(self, op: str, *inputs: Node, attrs: dict[str, object], suffix: str, last: bool = False) -> Node:
        return self.b.op(op, *inputs, name=self.name if last else f"{self.name}.{suffix}", module=self.module,
                         attrs=attrs)

    def diagonal(self, node: Node, have: str) -> tuple[Node, str]:
        """`node` with each letter it repeats taken once: the diagonal of those two axes, as the product with an
        identity mask over them (zero off the diagonal), summed over the second."""
        while len(set(have)) != len(have):
            letter = next(c for c in have if have.count(c) > 1)
            first = have.index(letter)
            second = have.index(letter, first + 1)
            size = self.sizes[letter]
            shape = [1] * len(have)
            shape[first] = shape[second] = size
            mask = self.b.const(np.eye(size).reshape(shape), self.module, name=f"{self.name}.eye")
            node = self._op("mul", node, mask, attrs={}, suffix="diag")
            node = self._op("sum", node, attrs={"axis": (second,), "keepdims": False}, suffix="diag.sum")
            have = have[:second] + have[second + 1:]
        return node, have

    def reduce(self, node: Node, have: str, keep: set[str]) -> tuple[Node, str]:
        """`node` with the axes of the letters not in `keep` summed away."""
        gone = tuple(i for i, c in enumerate(have) if c not in keep)
        if not gone:
            return node, have
        node = self._op("sum", node, attrs={"axis": gone, "keepdims": False}, suffix="sum")
        return node, "".join(c for c in have if c in keep)

    def arrange(self, node: Node, have: str, order: str, shape: tuple[int, ...] | None = None,
                suffix: str = "t", last: bool = False) -> Node:
        """`node` with its axes in `order`, then reshaped to `shape` where one is given."""
        perm = tuple(have.index(c) for c in order)
        if perm != tuple(range(len(perm))):
            node = self._op("transpose", node, attrs={"axes": perm}, suffix=suffix, last=last and shape is None)
        if shape is not None and tuple(node.shape) != shape:
            node = self._op("reshape", node, attrs={"shape": shape}, suffix=f"{suffix}.r", last=last)
        return node

    def contract(self, a: Node, la: str, b: Node, lb: str, later: set[str]) -> tuple[Node, str]:
        """a and b multiplied over the letters both have: a batched matrix product."""
        batch = "".join(c for c in la if c in lb and c in later)
        summed = "".join(c for c in la if c in lb and c not in later)
        a_free = "".join(c for c in la if c not in lb)
        b_free = "".join(c for c in lb if c not in la)

        def size(letters: str) -> int:
            return math.prod(self.sizes[c] for c in letters)

        left = self.arrange(a, la, batch + a_free + summed, (size(batch), size(a_free), size(summed)), "a")
        right = self.arrange(b, lb, batch + summed + b_free, (size(batch), size(summed), size(b_free)), "b")
        product = self._op("matmul", left, right, attrs={}, suffix="mm")
        have = batch + a_free + b_free
        shape = tuple(self.sizes[c] for c in have)
        if tuple(product.shape) != shape:
            product = self._op("reshape", product, attrs={"shape": shape}, suffix="mm.r")
        return product, have
