"""The shape family (gather, flip, expand, tile, triu/tril, index_nd, index_put): gradient check, torch parity,
backends agree.

Index tensors repeat indices on purpose (fixed values where chance might not): their gradients must
add up, which is what np.add.at is for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from opcheck import Case, check_against_torch, check_backends_agree, check_gradient, fixed, ints, normal, one_op

from propscope.graph.errors import ShapeError


def _wrapped(size: int) -> Any:
    """torch.gather refuses negative indices; ONNX GatherElements (and the op) count them from the end."""
    return lambda torch, i: torch.where(i < 0, i + size, i)


CASES = [
    # gather: along each axis, negative axis, index smaller than x off the axis, repeats, negative indices
    Case("gather", (normal(3, 4), ints(4, 3, 6)), lambda F, t, x, i: t.gather(x, 1, i), {"axis": 1}, "axis1-repeats"),
    Case("gather", (normal(4, 5), ints(4, 2, 3)), lambda F, t, x, i: t.gather(x, 0, i), {"axis": 0}, "axis0-smaller"),
    Case("gather", (normal(2, 3, 4), ints(4, 2, 2, 6)), lambda F, t, x, i: t.gather(x, -1, i), {"axis": -1},
         "3d-negative-axis"),
    Case("gather", (normal(2, 3, 4, 2), fixed(np.zeros((2, 3, 2, 2), dtype=np.int64))),
         lambda F, t, x, i: t.gather(x, 2, i), {"axis": 2}, "4d-all-one-index"),
    Case("gather", (normal(3, 4), ints(0, 3, 5, low=-4)),
         lambda F, t, x, i: t.gather(x, 1, _wrapped(4)(t, i)), {"axis": 1}, "negative-indices"),
    # detach: the value, no gradient (torch's x.detach() has none to give)
    Case("detach", (normal(3, 4),), lambda F, t, x: x.detach(), tag="2d"),
    # flip
    Case("flip", (normal(3, 4),), lambda F, t, x: x.flip((0,)), {"axes": (0,)}, "axis0"),
    Case("flip", (normal(2, 3, 4),), lambda F, t, x: x.flip((-1, 1)), {"axes": (-1, 1)}, "3d-two-axes"),
    Case("flip", (normal(2, 3, 2, 4),), lambda F, t, x: x.flip((0, 2, 3)), {"axes": (0, 2, 3)}, "4d"),
    # expand: a size-1 axis grows, -1 keeps, new leading axes
    Case("expand", (normal(3, 1),), lambda F, t, x: x.expand(3, 4), {"shape": (3, 4)}, "grow"),
    Case("expand", (normal(3, 1),), lambda F, t, x: x.expand(2, -1, 4), {"shape": (2, -1, 4)}, "new-axis-keep"),
    Case("expand", (normal(1, 4, 1),), lambda F, t, x: x.expand(2, 3, 4, 5), {"shape": (2, 3, 4, 5)}, "4d"),
    Case("expand", (normal(),), lambda F, t, x: x.expand(2, 3), {"shape": (2, 3)}, "scalar"),
    # tile (torch's repeat): as many repeats as axes, more repeats than axes
    Case("tile", (normal(2, 3),), lambda F, t, x: x.repeat(2, 3), {"repeats": (2, 3)}, "2d"),
    Case("tile", (normal(2, 3),), lambda F, t, x: x.repeat(2, 1, 3), {"repeats": (2, 1, 3)}, "more-repeats"),
    Case("tile", (normal(2, 1, 3),), lambda F, t, x: x.repeat(1, 2, 2), {"repeats": (1, 2, 2)}, "3d"),
    Case("tile", (normal(3),), lambda F, t, x: x.repeat(2, 1, 2), {"repeats": (2, 1, 2)}, "1d-to-3d"),
    # triangles of computed tensors: the diagonal and off it, batched
    Case("triu", (normal(4, 5),), lambda F, t, x: t.triu(x), tag="2d"),
    Case("triu", (normal(2, 3, 4),), lambda F, t, x: t.triu(x, 1), {"diagonal": 1}, "3d-above"),
    Case("triu", (normal(2, 2, 3, 3),), lambda F, t, x: t.triu(x, -1), {"diagonal": -1}, "4d-below"),
    Case("tril", (normal(4, 5),), lambda F, t, x: t.tril(x), tag="2d"),
    Case("tril", (normal(2, 4, 3),), lambda F, t, x: t.tril(x, -1), {"diagonal": -1}, "3d-below"),
    Case("tril", (normal(2, 2, 3, 3),), lambda F, t, x: t.tril(x, 2), {"diagonal": 2}, "4d-above"),
    # index_nd: x[i], x[:, i, j] with repeats, broadcast index tensors, negative axes and indices, separated axes
    Case("index_nd", (normal(3, 4, 5), fixed([2, 0, 2])), lambda F, t, x, i: x[i], tag="first-axis"),
    Case("index_nd", (normal(2, 5, 6), fixed([1, 4, 1, 0]), fixed([2, 5, 2, 0])),
         lambda F, t, x, i, j: x[:, i, j], {"axes": (1, 2)}, "consecutive-repeats"),
    Case("index_nd", (normal(2, 4, 5, 3), ints(4, 2, 1), ints(5, 3)),
         lambda F, t, x, i, j: x[:, i, j], {"axes": (1, 2)}, "broadcast"),
    Case("index_nd", (normal(2, 4, 5), fixed([-1, 0, -1]), fixed([3, -2, 3])),
         lambda F, t, x, i, j: x[:, i, j], {"axes": (-2, -1)}, "negative"),
    Case("index_nd", (normal(4, 3, 5), fixed([[0, 3], [3, 1]]), fixed([[4, 0], [4, 2]])),
         lambda F, t, x, i, j: x[i, :, j], {"axes": (0, 2)}, "separated-axes-go-first"),
    # index_put: scatter-add of computed values (repeats add up), broadcast values, put without repeats
    Case("index_put", (normal(2, 5, 6), normal(2, 4), fixed([1, 4, 1, 0]), fixed([2, 5, 2, 0])),
         lambda F, t, x, v, i, j: t.ops.aten.index_put(x, [None, i, j], v, True),
         {"axes": (1, 2), "accumulate": True}, "accumulate-repeats"),
    Case("index_put", (normal(4, 3), normal(3), fixed([[0, 2], [2, 2]])),
         lambda F, t, x, v, i: t.ops.aten.index_put(x, [i], v, True), {"accumulate": True}, "accumulate-broadcast"),
    Case("index_put", (normal(2, 4, 5), normal(2, 3), fixed([3, 0, -1]), fixed([1, 4, 0])),
         lambda F, t, x, v, i, j: t.ops.aten.index_put(x, [None, i, j], v, False), {"axes": (1, 2)}, "put"),
    Case("index_put", (normal(4, 3, 5), normal(2, 3), fixed([0, 3]), fixed([4, 1])),
         lambda F, t, x, v, i, j: t.ops.aten.index_put(x, [i, None, j], v, True),
         {"axes": (0, 2), "accumulate": True}, "separated-axes"),
    # scatter_reduce: every reduction at repeated positions, with x's own value and without it, along each axis;
    # prod with a zero in src alone at its position, a zero in x, and two zeros at one position
    *(Case("scatter_reduce", (normal(3, 5), normal(3, 4), fixed([[0, 2, 2, 4], [1, 1, 1, 0], [3, 0, 4, 3]])),
           lambda F, t, x, s, i, r=reduce, k=keep: t.scatter_reduce(x, 1, i, s, r, include_self=k),
           {"axis": 1, "reduce": reduce, "include_self": keep}, f"{reduce}{'' if keep else '-without-self'}")
      for reduce in ("sum", "prod", "mean", "amax", "amin") for keep in (True, False)),
    Case("scatter_reduce", (normal(4, 2, 3), normal(3, 2, 3), fixed(np.array([[[0, 3, 3], [2, 2, 0]],
                                                                            [[3, 3, 3], [0, 1, 2]],
                                                                            [[1, 0, 3], [2, 2, 2]]]))),
         lambda F, t, x, s, i: t.scatter_reduce(x, 0, i, s, "mean"), {"axis": 0, "reduce": "mean"}, "3d-axis0"),
    Case("scatter_reduce", (fixed([[2.0, 0.0, -1.5, 3.0], [0.5, 4.0, 1.0, -2.0]]),
                            fixed([[0.0, 1.5, 2.0], [0.0, 0.0, 3.0]]), fixed([[0, 0, 1], [3, 3, 1]])),
         lambda F, t, x, s, i: t.scatter_reduce(x, 1, i, s, "prod"), {"axis": 1, "reduce": "prod"}, "prod-zeros"),
    # rounding through a narrower float: values and the gradient, as x.half().to(x.dtype) under autograd
    Case("cast", (normal(3, 4, scale=1e3),), lambda F, t, x: x.half().to(x.dtype)),
    Case("cast", (normal(3, 4, scale=1e5),), lambda F, t, x: x.half().to(x.dtype), tag="overflow"),
    Case("cast", (normal(3, 4),), lambda F, t, x: x.bfloat16().to(x.dtype), {"dtype": "bfloat16"}, "bfloat16"),
    Case("cast", (normal(3, 4),), lambda F, t, x: x.float().to(x.dtype), {"dtype": "float32"}, "float32"),
]
# a cast's forward is a step function; its gradient is torch's: the upstream, rounded (not the steps' 0)
ROUNDING = ("cast",)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradient_matches_finite_differences(case: Case) -> None:
    if case.op in ROUNDING:
        pytest.skip("a rounding's central differences are its steps' 0; torch passes the gradient through")
    check_gradient(case)


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_torch(case: Case) -> None:
    check_against_torch(case)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_backends_agree(case: Case, dtype: str) -> None:
    check_backends_agree(case, dtype)


def test_repeated_gather_indices_add_up() -> None:
    """Three picks of x[0, 1] get three upstream gradients, summed (a plain `grad[idx] = g` keeps one)."""
    case = Case("gather", (fixed(np.arange(6.0).reshape(2, 3)), fixed([[1, 1, 1], [0, 2, 0]])),
                lambda F, t, x, i: t.gather(x, 1, i), {"axis": 1})
    node = one_op("gather", case.arrays(), case.attrs)
    from propscope.backends.numpy import NumpyBackend

    backend = NumpyBackend("float64")
    x, idx = (backend.asarray(a) for a in case.arrays())
    out = backend.forward(node, [x, idx])
    assert out.tolist() == [[1.0, 1.0, 1.0], [3.0, 5.0, 3.0]]
    gx, gidx = backend.vjp(node, [x, idx], out, np.ones((2, 3)))
    assert gidx is None and gx.tolist() == [[0.0, 3.0, 0.0], [2.0, 0.0, 1.0]]


@pytest.mark.parametrize(
    ("op", "shapes", "attrs", "says"),
    [
        ("gather", [(3, 4), (3,)], {"axis": 1}, "as many axes"),
        ("gather", [(3, 4), (4, 2)], {"axis": 1}, "larger than x .* along axis 0"),
        ("gather", [(3, 4), (3, 2)], {"axis": 2}, "out of range"),
        ("flip", [(3, 4)], {"axes": (0, -2)}, "twice"),
        ("flip", [(3, 4)], {"axes": (2,)}, "out of range"),
        ("expand", [(3, 2)], {"shape": (3, 4)}, "only 1 can grow"),
        ("expand", [(3, 1)], {"shape": (4,)}, "fewer axes"),
        ("expand", [(3, 1)], {"shape": (-1, 3, 4)}, "new leading axis"),
        ("expand", [(3, 1)], {"shape": "big"}, "tuple of integers"),
        ("tile", [(2, 3)], {"repeats": (2,)}, "a repeat count for each"),
        ("tile", [(2, 3)], {"repeats": (2, -1)}, "negative"),
        ("triu", [(3,)], {}, "matrices"),
        ("tril", [(3, 3)], {"diagonal": 0.5}, "diagonal"),
        ("index_nd", [(3, 4), (2,), (3,)], {"axes": (0, 1)}, "do not broadcast"),
        ("index_nd", [(3, 4), (2,)], {"axes": (0, 1)}, "1 index tensors for 2 axes"),
        ("index_nd", [(3, 4), (2,), (2,)], {"axes": (1, -1)}, "twice"),
    ],
)
def test_shape_rule_says_what_is_wrong(op: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any],
                                       says: str) -> None:
    with pytest.raises(ShapeError, match=says):
        one_op(op, [np.ones(s, dtype=np.int64 if i else np.float64) for i, s in enumerate(shapes)], attrs)


def test_out_of_range_index_is_one_clear_error() -> None:
    from propscope.backends.numpy import NumpyBackend

    node = one_op("gather", [np.ones((2, 3)), np.array([[0], [3]])], {"axis": 1})
    with pytest.raises(IndexError, match="out of range for axis 1 of size 3"):
        NumpyBackend("float64").forward(node, [np.ones((2, 3)), np.array([[0], [3]])])


def test_index_nd_refuses_a_boolean_mask() -> None:
    from propscope.backends.numpy import NumpyBackend

    x, mask = np.ones((3, 2)), np.array([True, False, True])
    node = one_op("index_nd", [x, mask])
    with pytest.raises(TypeError, match="boolean mask"):
        NumpyBackend("float64").forward(node, [x, mask])
