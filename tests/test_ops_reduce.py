"""The reduce family's op table: amax/amin, prod, var/std, logsumexp, cumsum, cumprod, cummax/cummin, argmax/argmin,
argsort (top-k).

Three checks per case (opcheck.py): the hand-written VJP against central differences, NumPy against
torch under autograd, the two backends against each other in float32 and float64. Every reduction runs
over the same axis variants (None, one axis, a negative one, a tuple with negatives, keepdims on and off).
amax/amin inputs are spaced so that no two values tie; ties, zeros in a product and a spread of 0 are
checked against torch's conventions in KINKS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from opcheck import (
    Case,
    check_against_torch,
    check_backends_agree,
    check_gradient,
    fixed,
    normal,
    one_op,
    spaced,
)

from propscope.backends.numpy import NumpyBackend
from propscope.graph.errors import ShapeError
from propscope.graph.ir import Graph

AXES: list[tuple[Any, bool]] = [(None, False), (1, False), (-1, True), ((0, -1), False), ((-3, 1), True),
                                (None, True)]


def _dims(axis: Any, ndim: int = 3) -> tuple[int, ...]:
    return tuple(range(ndim)) if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))


def _reduction(op: str, torch_name: str, maker: Any, **extra: Any) -> list[Case]:
    def torch_fn(axis: Any, keepdims: bool) -> Any:
        return lambda F, t, x: getattr(t, torch_name)(x, dim=_dims(axis), keepdim=keepdims, **extra)

    return [Case(op, (maker,), torch_fn(axis, keepdims), {"axis": axis, "keepdims": keepdims, **extra},
                 f"axis={axis}{'-keepdims' if keepdims else ''}{''.join(f'-{k}={v}' for k, v in extra.items())}")
            for axis, keepdims in AXES]


def _prod(axis: Any, keepdims: bool) -> Any:
    """torch.prod takes one dim: reduce the dims one after the other, from the last."""
    def fn(F: Any, t: Any, x: Any) -> Any:
        for d in sorted((d % 3 for d in _dims(axis)), reverse=True):
            x = t.prod(x, dim=d, keepdim=keepdims)
        return x
    return fn


def with_zeros(*shape: int, zeros: int) -> Any:
    """Normal values with `zeros` of them set to exactly 0 in every row: prod's gradient has no x_i to divide by."""
    def make(rng: np.random.Generator) -> np.ndarray:
        x = rng.standard_normal(shape)
        for row in x.reshape(-1, shape[-1]):
            row[rng.choice(shape[-1], zeros, replace=False)] = 0.0
        return x
    return make


def _cumsum(axis: int, reverse: bool, exclusive: bool) -> Any:
    def fn(F: Any, t: Any, x: Any) -> Any:
        y = x.flip(axis) if reverse else x
        out = t.cumsum(y, dim=axis)
        if exclusive:
            out = out - y
        return out.flip(axis) if reverse else out
    return fn


def _cumprod(axis: int, reverse: bool, exclusive: bool) -> Any:
    def fn(F: Any, t: Any, x: Any) -> Any:
        y = x.flip(axis) if reverse else x
        if exclusive:
            y = t.cat([t.ones_like(y.narrow(axis, 0, 1)), y.narrow(axis, 0, y.shape[axis] - 1)], dim=axis)
        out = t.cumprod(y, dim=axis)
        return out.flip(axis) if reverse else out
    return fn


def _last_index(name: str, axis: int) -> Any:
    return lambda F, t, x: x.shape[axis] - 1 - getattr(t, name)(x.flip(axis), dim=axis)


def many_ties(*shape: int) -> Any:
    """Values from four levels: most of them tie with many others."""
    return lambda rng: rng.integers(0, 4, shape).astype(float)


ties = fixed([[0.0, 2.0, 2.0, 1.0], [3.0, 3.0, 3.0, 3.0], [-1.0, -1.0, 5.0, -1.0]])

CASES = [
    *_reduction("amax", "amax", spaced(2, 3, 4)),
    *_reduction("amin", "amin", spaced(2, 3, 4)),
    Case("amax", (spaced(2, 3),), lambda F, t, x: x.clone(), {"axis": ()}, "no-axes"),
    Case("amax", (fixed(1.5),), lambda F, t, x: t.amax(x), tag="scalar"),
    *[Case("prod", (normal(2, 3, 4),), _prod(axis, keepdims), {"axis": axis, "keepdims": keepdims},
           f"axis={axis}{'-keepdims' if keepdims else ''}") for axis, keepdims in AXES],
    Case("prod", (with_zeros(3, 4, zeros=1),), lambda F, t, x: t.prod(x, dim=1), {"axis": 1}, "one-zero"),
    Case("prod", (with_zeros(3, 4, zeros=2),), lambda F, t, x: t.prod(x, dim=-1, keepdim=True),
         {"axis": -1, "keepdims": True}, "two-zeros"),
    Case("prod", (with_zeros(2, 3, zeros=1),), lambda F, t, x: t.prod(x), tag="all-one-zero"),
    Case("prod", (normal(2, 3),), lambda F, t, x: x.clone(), {"axis": ()}, "no-axes"),
    *_reduction("var", "var", normal(2, 3, 4)),
    *_reduction("var", "var", normal(2, 3, 4), correction=0.0)[1:3],
    *_reduction("var", "var", normal(2, 3, 4), correction=2.5)[3:4],
    *_reduction("std", "std", normal(2, 3, 4)),
    *_reduction("std", "std", normal(2, 3, 4), correction=0.0)[1:3],
    *_reduction("logsumexp", "logsumexp", normal(2, 3, 4, scale=3.0)),
    Case("logsumexp", (fixed([[800.0, 799.0], [-800.0, -801.0]]),), lambda F, t, x: t.logsumexp(x, dim=1),
         {"axis": 1}, "large"),
    Case("logsumexp", (normal(2, 3),), lambda F, t, x: x.clone(), {"axis": ()}, "no-axes"),
    Case("cumsum", (normal(3, 4),), _cumsum(0, False, False)),
    Case("cumsum", (normal(2, 3, 4),), _cumsum(-1, False, False), {"axis": -1}, "last"),
    Case("cumsum", (normal(2, 3, 4),), _cumsum(1, True, False), {"axis": 1, "reverse": True}, "reverse"),
    Case("cumsum", (normal(3, 4),), _cumsum(1, False, True), {"axis": 1, "exclusive": True}, "exclusive"),
    Case("cumsum", (normal(3, 4),), _cumsum(0, True, True), {"axis": 0, "reverse": True, "exclusive": True},
         "reverse-exclusive"),
    Case("cumsum", (normal(5),), _cumsum(0, False, False), tag="1-D"),
    Case("cumprod", (normal(3, 4),), _cumprod(0, False, False)),
    Case("cumprod", (normal(2, 3, 4),), _cumprod(-1, False, False), {"axis": -1}, "last"),
    Case("cumprod", (normal(2, 3, 4),), _cumprod(1, True, False), {"axis": 1, "reverse": True}, "reverse"),
    Case("cumprod", (normal(3, 4),), _cumprod(1, False, True), {"axis": 1, "exclusive": True}, "exclusive"),
    Case("cumprod", (normal(3, 4),), _cumprod(0, True, True), {"axis": 0, "reverse": True, "exclusive": True},
         "reverse-exclusive"),
    Case("cumprod", (normal(5),), _cumprod(0, False, False), tag="1-D"),
    Case("cumprod", (with_zeros(3, 5, zeros=1),), _cumprod(1, False, False), {"axis": 1}, "one-zero"),
    Case("cumprod", (with_zeros(2, 3, 6, zeros=2),), _cumprod(-1, False, False), {"axis": -1}, "two-zeros"),
    Case("cumprod", (with_zeros(3, 5, zeros=2),), _cumprod(1, True, True), {"axis": 1, "reverse": True,
                                                                           "exclusive": True},
         "zeros-reverse-exclusive"),
    Case("cumprod", (fixed([[0.0, 2.0, -1.5, 3.0], [1.5, -2.0, 0.5, 0.0], [0.0, 0.0, 2.0, 1.0]]),),
         _cumprod(1, False, False), {"axis": 1}, "zero-first-last-twice"),
    Case("cummax", (spaced(3, 5),), lambda F, t, x: t.cummax(x, dim=1).values, {"axis": 1}),
    Case("cummax", (spaced(2, 3, 4),), lambda F, t, x: t.cummax(x, dim=-1).values, {"axis": -1}, "last"),
    Case("cummin", (spaced(4, 3),), lambda F, t, x: t.cummin(x, dim=0).values),
    Case("cummin", (spaced(2, 3, 4),), lambda F, t, x: t.cummin(x, dim=1).values, {"axis": 1}, "middle"),
    Case("argmax", (spaced(2, 3, 4),), lambda F, t, x: t.argmax(x)),
    Case("argmax", (spaced(2, 3, 4),), lambda F, t, x: t.argmax(x, dim=1), {"axis": 1}, "axis"),
    Case("argmax", (spaced(2, 3, 4),), lambda F, t, x: t.argmax(x, dim=-1, keepdim=True),
         {"axis": -1, "keepdims": True}, "axis-keepdims"),
    Case("argmax", (spaced(2, 3),), lambda F, t, x: t.argmax(x, dim=None, keepdim=True), {"keepdims": True},
         "flat-keepdims"),
    Case("argmax", (ties,), lambda F, t, x: t.argmax(x, dim=1), {"axis": 1}, "ties-first"),
    Case("argmax", (ties,), _last_index("argmax", 1), {"axis": 1, "select_last_index": True}, "ties-last"),
    Case("argmin", (spaced(2, 3, 4),), lambda F, t, x: t.argmin(x, dim=0), {"axis": 0}),
    Case("argmin", (ties,), lambda F, t, x: t.argmin(x, dim=-1, keepdim=True), {"axis": -1, "keepdims": True},
         "ties-first"),
    Case("argmin", (ties,), _last_index("argmin", 0), {"axis": 0, "select_last_index": True}, "ties-last"),
    Case("argmin", (ties,), lambda F, t, x: x.numel() - 1 - t.argmin(x.flatten().flip(0)),
         {"select_last_index": True}, "flat-ties-last"),
    Case("argsort", (spaced(2, 3, 4),), lambda F, t, x: t.argsort(x, dim=-1)),
    Case("argsort", (spaced(2, 3, 4),), lambda F, t, x: t.argsort(x, dim=1, descending=True),
         {"axis": 1, "descending": True}, "descending"),
    Case("argsort", (spaced(2, 3, 4),), lambda F, t, x: t.topk(x, 2, dim=-1).indices,
         {"descending": True, "k": 2}, "topk"),
    Case("argsort", (spaced(2, 3, 4),), lambda F, t, x: t.topk(x, 1, dim=0, largest=False).indices,
         {"axis": 0, "k": 1}, "topk-smallest"),
    Case("argsort", (spaced(2, 3, 4),), lambda F, t, x: t.topk(x, 0, dim=1).indices,
         {"axis": 1, "descending": True, "k": 0}, "topk-none"),
    Case("argsort", (ties,), lambda F, t, x: t.sort(x, dim=1, descending=True, stable=True).indices,
         {"axis": 1, "descending": True}, "ties-stable"),
    Case("argsort", (ties,), lambda F, t, x: t.sort(x, dim=0, stable=True).indices[:2],
         {"axis": 0, "k": 2}, "ties-stable-k"),
    # torch's CPU kernels leave ties where libstdc++'s unstable sort (more than 16 values) and selection put them
    Case("argsort", (many_ties(3, 40),), lambda F, t, x: t.sort(x, dim=1, descending=True).indices,
         {"axis": 1, "descending": True, "ties": "sort"}, "ties-sort"),
    Case("argsort", (many_ties(40, 3),), lambda F, t, x: t.sort(x, dim=0).indices, {"axis": 0, "ties": "sort"},
         "ties-sort-axis0"),
    Case("argsort", (fixed([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 2.0, 2.0]]),),
         lambda F, t, x: t.topk(x, 2, dim=1).indices, {"axis": 1, "descending": True, "k": 2, "ties": "topk"},
         "ties-topk"),
    Case("argsort", (many_ties(2, 200),), lambda F, t, x: t.topk(x, 3, dim=1, largest=False).indices,
         {"axis": 1, "k": 3, "ties": "topk"}, "ties-topk-partial-sort"),
    Case("argsort", (fixed([[np.nan, 1.0, np.nan, 2.0, 1.0]]),), lambda F, t, x: t.topk(x, 3, dim=1).indices,
         {"axis": 1, "descending": True, "k": 3, "ties": "topk"}, "ties-topk-nan"),
    Case("argsort", (fixed([[np.nan, 1.0, 3.0, 2.0]]),), lambda F, t, x: t.sort(x, dim=1, descending=True,
         stable=True).indices, {"axis": 1, "descending": True}, "nan-first-descending"),
]



def _norm(order: float, axis: Any, keepdims: bool) -> Any:
    return lambda F, t, x: t.linalg.vector_norm(x, ord=order, dim=_dims(axis), keepdim=keepdims)


def away(*shape: int) -> Any:
    """|x| ≥ 0.2 (spaced): |x|^(p−1) is steep near 0 for p < 2, where a difference stencil would straddle it."""
    return lambda rng: np.sign(spaced(*shape)(rng) + 1e-3) * (np.abs(spaced(*shape)(rng)) + 0.2)


CASES += [
    *[Case("vector_norm", (normal(2, 3, 4),), _norm(2.0, axis, keepdims), {"axis": axis, "keepdims": keepdims},
           f"axis={axis}{'-keepdims' if keepdims else ''}") for axis, keepdims in AXES],
    Case("vector_norm", (away(2, 3, 4),), _norm(1.0, -1, False), {"axis": -1, "ord": 1.0}, "p1"),
    Case("vector_norm", (away(2, 3, 4),), _norm(3.0, (0, 2), True), {"axis": (0, 2), "keepdims": True, "ord": 3.0},
         "p3"),
    Case("vector_norm", (away(2, 3, 4),), _norm(0.5, 1, False), {"axis": 1, "ord": 0.5}, "p0.5"),
    Case("vector_norm", (spaced(2, 3, 4),), _norm(float("inf"), -1, False), {"axis": -1, "ord": float("inf")},
         "inf"),
]

# Conventions at ties and at 0: torch's (against torch only: finite differences straddle the kink)
KINKS = [
    Case("amax", (ties,), lambda F, t, x: t.amax(x, dim=1), {"axis": 1}, "ties"),
    Case("amin", (ties,), lambda F, t, x: t.amin(x, dim=(0, 1), keepdim=True), {"axis": (0, 1), "keepdims": True},
         "ties"),
    Case("amax", (ties,), lambda F, t, x: t.amax(x), tag="ties-all"),
    # a running extreme that ties an earlier value comes from the later one (torch.cummax's index), NaN stays
    Case("cummax", (fixed([[1.0, 3.0, 3.0, 2.0, 3.0, 5.0], [2.0, 2.0, 2.0, -1.0, 4.0, 4.0]]),),
         lambda F, t, x: t.cummax(x, dim=1).values, {"axis": 1}, "ties"),
    Case("cummin", (fixed([[1.0, 0.0, 0.0, 2.0, 0.0, -1.0], [3.0, 3.0, 1.0, 1.0, 2.0, 1.0]]),),
         lambda F, t, x: t.cummin(x, dim=1).values, {"axis": 1}, "ties"),
    Case("cummax", (fixed([[1.0, np.nan, 3.0, np.nan, 0.5]]),), lambda F, t, x: t.cummax(x, dim=1).values,
         {"axis": 1}, "nan"),
    Case("std", (fixed([[1.0, 1.0, 1.0], [1.0, 2.0, 4.0]]),), lambda F, t, x: t.std(x, dim=1), {"axis": 1},
         "zero-spread"),
    Case("logsumexp", (fixed([[-np.inf, -np.inf], [0.0, -np.inf]]),), lambda F, t, x: t.logsumexp(x, dim=1),
         {"axis": 1}, "minus-inf"),
    # a zero vector: torch's norm gives it a zero gradient (√ at 0 would give NaN); tied largest |x| share it
    Case("vector_norm", (fixed([[0.0, 0.0, 0.0], [3.0, -4.0, 0.0]]),), _norm(2.0, 1, False), {"axis": 1},
         "zero-row"),
    Case("vector_norm", (fixed([[0.0, 0.0], [1.0, -2.0]]),), _norm(3.0, 1, True), {"axis": 1, "keepdims": True,
         "ord": 3.0}, "zero-row-p3"),
    Case("vector_norm", (fixed([[2.0, -2.0, 1.0], [0.0, 0.0, 0.0]]),), _norm(float("inf"), 1, False),
         {"axis": 1, "ord": float("inf")}, "inf-ties"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradient(case: Case) -> None:
    check_gradient(case)


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES + KINKS, ids=lambda c: c.id)
def test_against_torch(case: Case) -> None:
    check_against_torch(case)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES + KINKS[:4], ids=lambda c: c.id)
def test_backends_agree(case: Case, dtype: str) -> None:
    check_backends_agree(case, dtype)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_dtypes_are_kept(case: Case) -> None:
    """float32 in, float32 out and back; an index is an integer."""
    arrays = case.arrays()
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend("float32")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    assert out.shape == node.shape
    (grad,) = backend.vjp(node, inputs, out, backend.ones(out.shape))
    if case.op in ("argmax", "argmin", "argsort"):
        assert out.dtype == np.int64 and grad is None
    else:
        assert out.dtype == np.float32 and grad is not None and grad.dtype == np.float32, case.id


def test_tied_extremes_share_the_gradient() -> None:
    b = NumpyBackend("float64")
    x = b.asarray([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    node = one_op("amax", [x], {"axis": 1})
    (g,) = b.vjp(node, [x], b.forward(node, [x]), b.asarray([1.0, 3.0]))
    assert g.tolist() == [[0.0, 0.5, 0.5], [1.0, 1.0, 1.0]]


def test_prod_gradient_with_zeros_is_the_product_of_the_others() -> None:
    b = NumpyBackend("float64")
    x = b.asarray([[2.0, 0.0, 3.0], [0.0, 5.0, 0.0]])
    node = one_op("prod", [x], {"axis": -1})
    (g,) = b.vjp(node, [x], b.forward(node, [x]), b.ones((2,)))
    assert g.tolist() == [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0]]


@pytest.mark.parametrize(("op", "shape", "attrs", "words"), [
    ("amax", (2, 3), {"axis": 2}, "axis 2 is out of range for 2-D input"),
    ("var", (2, 3), {"axis": (0, -3)}, "axis -3 is out of range"),
    ("prod", (2, 3), {"axis": "0"}, "axis must be None, an int or a tuple of ints"),
    ("logsumexp", (2, 3), {"axis": True}, "axis must be None, an int or a tuple of ints"),
    ("std", (2, 3), {"keepdims": 1}, "keepdims must be True or False"),
    ("var", (2, 3), {"correction": None}, "correction must be a number"),
    ("amin", (2, 0), {"axis": 1}, "an axis of length 0 has no largest or smallest value"),
    ("argmax", (2, 3), {"axis": (0, 1)}, "takes one axis"),
    ("argmin", (), {"axis": 0}, "a scalar has no axis"),
    ("argmax", (0, 3), {}, "an axis of length 0"),
    ("argsort", (2, 3), {"axis": (0,)}, "argsort takes one axis"),
    ("argsort", (), {}, "at least a 1-D input"),
    ("argsort", (2, 3), {"k": 4}, "k must be an int from 0 to the axis' length 3"),
    ("argsort", (2, 3), {"axis": 0, "k": -1}, "k must be an int from 0 to the axis' length 2"),
    ("argsort", (2, 3), {"descending": "yes"}, "descending must be True or False"),
    ("argsort", (2, 3), {"axis": 2}, "axis 2 is out of range"),
    ("cumsum", (2, 3), {"axis": (0,)}, "cumsum takes one axis"),
    ("cumsum", (2, 3), {"axis": -3}, "axis -3 is out of range"),
    ("cumsum", (), {"axis": 0}, "at least a 1-D input"),
    ("cumprod", (2, 3), {"axis": (0,)}, "cumprod takes one axis"),
])
def test_bad_axes_and_attributes_are_refused(op: str, shape: tuple[int, ...], attrs: dict[str, Any],
                                             words: str) -> None:
    g = Graph()
    with pytest.raises(ShapeError, match=words) as info:
        g.add(op, g.input("x", shape), name="r", attrs=attrs)
    assert f"{op} node 'r'" in str(info.value)


def test_reduced_shapes_follow_numpy() -> None:
    x = np.zeros((2, 3, 4))
    for axis, keepdims in [*AXES, ((), False)]:
        np_axis = axis if axis is None or isinstance(axis, int) else tuple(axis)
        for op in ("amax", "prod", "var", "logsumexp"):
            assert one_op(op, [x], {"axis": axis, "keepdims": keepdims}).shape == np.sum(
                x, axis=np_axis, keepdims=keepdims).shape
    assert one_op("argmax", [x], {"axis": -2}).shape == (2, 4)
    assert one_op("argmax", [x], {"keepdims": True}).shape == (1, 1, 1)
    assert one_op("cumsum", [x], {"axis": -1}).shape == (2, 3, 4)


@pytest.mark.torch
@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_the_first_true_or_false_of_a_mask(op: str) -> None:
    """CLIP pools its text at the first end token, `(ids == eos).int().argmax(-1)`: an index into a mask,
    which the torch backend holds as bool (torch's argmax takes numbers only)."""
    from propscope.backends import get_backend

    ids = np.array([[5, 2, 7, 2], [1, 3, 4, 2]], dtype=np.int64)
    g = Graph("mask")
    compare = g.add("compare", g.input("ids", ids.shape, dtype="int64"), g.input("eos", ()), name="is_eos",
                    attrs={"op": "eq"})
    find = g.add(op, compare, name="found", attrs={"axis": -1})
    for name in ("numpy", "torch"):
        backend = get_backend(name, "float64")
        mask = backend.forward(compare, [backend.asarray(ids), backend.asarray(np.array(2))])
        found = backend.to_numpy(backend.forward(find, [mask]))
        assert found.tolist() == ([1, 3] if op == "argmax" else [0, 0]), name
