"""einsum read as sums, transposes, reshapes and batched products (propscope/graph/readers/_einsum.py).

Each equation is built as a graph of catalog ops from graph inputs, run forward and backward on the NumPy
backend in float64, and checked against NumPy's einsum (forward) and torch autograd (every operand's gradient);
what it does not read is refused with a sentence that says why.
"""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import chained_vjps

from propscope.debugger import open_session
from propscope.graph.ir import Node
from propscope.graph.readers._build import Builder
from propscope.graph.readers._einsum import EinsumUnmapped, einsum, fold, parse

EQUATIONS = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("B G H I D, B G H J D -> B G H I J", [(2, 1, 2, 3, 4), (2, 1, 2, 5, 4)]),  # MaxViT, spaced capitals
    ("...id,dk->...ik", [(2, 3, 4), (4, 6)]),
    ("bi,bj", [(3, 4), (3, 5)]),  # implicit output: "ij"
    ("bi,bj->bij", [(3, 4), (3, 5)]),  # outer product per row
    ("bi,ij,bj->b", [(3, 4), (4, 5), (3, 5)]),  # three operands
    ("bij->b", [(3, 4, 5)]),
    ("ij->ji", [(3, 4)]),
    ("i,i->", [(6,), (6,)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ("ii->i", [(4, 4)]),  # a diagonal
    ("ii", [(4, 4)]),  # the trace (implicit: nothing keeps i)
    ("...ii->...i", [(2, 3, 3)]),  # ONNX's batch diagonal
    ("bii,bij->bj", [(2, 3, 3), (2, 3, 5)]),  # a diagonal, then a product
    ("iji->j", [(3, 2, 3)]),  # repeated letters apart
]


def built(equation: str, shapes: list[tuple[int, ...]]) -> tuple[Builder, list[np.ndarray], Node]:
    """The einsum's graph from one input per operand, random operands of `shapes`, and its output."""
    b = Builder("einsum", "test")
    rng = np.random.default_rng(len(equation))
    arrays = [rng.standard_normal(s) for s in shapes]
    out = einsum(b, equation, [b.input(f"x{i}", s) for i, s in enumerate(shapes)], "e")
    return b, arrays, out


@pytest.mark.parametrize("equation, shapes", EQUATIONS, ids=[e for e, _ in EQUATIONS])
def test_forward_is_numpys_einsum_and_gradients_are_autograds(equation: str, shapes: list[tuple[int, ...]]) -> None:
    torch = pytest.importorskip("torch")
    b, arrays, out = built(equation, shapes)
    model = b.model([out], None, "einsum")
    s = open_session(model, dtype="float64", data={f"x{i}": a for i, a in enumerate(arrays)}, loss="none")
    s.run_to_end()
    want = np.einsum(equation.replace(" ", ""), *arrays)
    got = s.value(s.prediction_node.name)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fold(equation, arrays, "test", "here"), want, rtol=1e-13, atol=1e-13)
    upstream = np.random.default_rng(7).standard_normal(got.shape)
    grads = chained_vjps(s, upstream)  # the hand-written VJPs, against torch.einsum's autograd
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    (torch.einsum(equation, *tensors) * torch.tensor(upstream.reshape(want.shape))).sum().backward()
    for i, t in enumerate(tensors):
        np.testing.assert_allclose(grads[f"x{i}"], t.grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=f"x{i}")


@pytest.mark.parametrize("equation, ranks, labels, out", [
    ("ij,jk->ik", [2, 2], ["ij", "jk"], "ik"),
    ("...ij,...jk", [3, 3], ["aij", "ajk"], "aik"),  # "..." becomes a letter the equation leaves unused
    ("bi,bj", [2, 2], ["bi", "bj"], "ij"),
    ("A B, B C -> A C", [2, 2], ["AB", "BC"], "AC"),
])
def test_parse(equation: str, ranks: list[int], labels: list[str], out: str) -> None:
    assert parse(equation, ranks) == (labels, out)


@pytest.mark.parametrize("equation, ranks, says", [
    ("...ij,...jk->...ik", [3, 4], "different ranks"),
    ("ij,jk->ik", [2], "names 2 operands"),
    ("ijk->i", [2], "does not fit"),
    ("ij->iz", [2], "no operand has"),
])
def test_what_is_not_read_is_said(equation: str, ranks: list[int], says: str) -> None:
    with pytest.raises(EinsumUnmapped, match=says):
        parse(equation, ranks)


def test_operands_whose_shared_letter_sizes_differ_are_refused() -> None:
    b = Builder("einsum", "test")
    with pytest.raises(EinsumUnmapped, match="'j' is 4 in one operand and 1 in another"):
        einsum(b, "ij,jk->ik", [b.input("a", (3, 4)), b.input("b", (1, 5))], "e")
