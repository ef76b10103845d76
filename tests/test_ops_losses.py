"""The class losses (nll_loss, cross_entropy and their unreduced forms): gradient check, torch parity, agreement.

mse, sse, bce and cross_entropy's original cases live in test_ops.py. The rows here cover the
attributes: reductions, class weights, ignore_index present in the targets (the default -100 and a
real class id), label smoothing, probability targets, unbatched (C,) and (N, C, d1, ...) inputs.
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
    ints,
    normal,
    one_op,
    positive,
)

from propscope.backends.numpy import NumpyBackend
from propscope.graph.errors import ShapeError
from propscope.graph.ops import LOSSES


def probabilities(*shape: int) -> Any:
    """Soft targets: rows (along the class axis 1, or 0 when 1-D) that sum to one."""
    axis = 0 if len(shape) == 1 else 1

    def make(rng: np.random.Generator) -> np.ndarray:
        e = np.exp(rng.standard_normal(shape))
        return e / e.sum(axis=axis, keepdims=True)

    return make


def _nll(**kw: Any) -> Any:
    return lambda F, t, lp, y, w=None: F.nll_loss(lp, y, w, **kw)


def _ce(**kw: Any) -> Any:
    return lambda F, t, z, y, w=None: F.cross_entropy(z, y, w, **kw)


IGNORED = fixed([0, -100, 2, 1, -100, 2])  # two samples of six ignored (the default ignore_index)

CASES = [
    # nll_loss
    Case("nll_loss", (normal(5, 3), ints(3, 5)), _nll(), tag="mean"),
    Case("nll_loss", (normal(5, 3), ints(3, 5)), _nll(reduction="sum"), {"reduction": "sum"}, "sum"),
    Case("nll_loss", (normal(6, 3), ints(3, 6), positive(3)), _nll(), tag="weights"),
    Case("nll_loss", (normal(6, 3), IGNORED), _nll(), tag="ignore-index"),
    Case("nll_loss", (normal(6, 3), IGNORED, positive(3)), _nll(reduction="sum"), {"reduction": "sum"},
         "ignore-weights-sum"),
    Case("nll_loss", (normal(6, 4), fixed([0, 1, 3, 1, 2, 1]), positive(4)), _nll(ignore_index=1),
         {"ignore_index": 1}, "ignore-a-real-class"),
    Case("nll_loss", (normal(2, 4, 3, 2), ints(4, 2, 3, 2), positive(4)), _nll(), tag="4d-weights"),
    Case("nll_loss", (normal(2, 3, 5), fixed([[0, -100, 2, 2, 1], [1, 1, -100, 0, 2]])), _nll(), tag="3d-ignore"),
    Case("nll_loss", (normal(4), fixed(2)), _nll(), tag="unbatched"),
    Case("nll_loss_unreduced", (normal(6, 3), IGNORED, positive(3)), _nll(reduction="none"), tag="weights-ignore"),
    Case("nll_loss_unreduced", (normal(2, 4, 3), ints(4, 2, 3)), _nll(reduction="none"), tag="3d"),
    # cross_entropy: reductions, weights, ignore_index, label smoothing, probabilities, K-dim, unbatched
    Case("cross_entropy", (normal(5, 3), ints(3, 5)), _ce(reduction="sum"), {"reduction": "sum"}, "sum"),
    Case("cross_entropy", (normal(6, 3), ints(3, 6), positive(3)), _ce(), tag="weights"),
    Case("cross_entropy", (normal(6, 3), IGNORED), _ce(), tag="ignore-index"),
    Case("cross_entropy", (normal(6, 4), fixed([0, 1, 3, 1, 2, 1])), _ce(ignore_index=1), {"ignore_index": 1},
         "ignore-a-real-class"),
    Case("cross_entropy", (normal(5, 4), ints(4, 5)), _ce(label_smoothing=0.1), {"label_smoothing": 0.1},
         "smoothing"),
    Case("cross_entropy", (normal(6, 3), IGNORED, positive(3)), _ce(label_smoothing=0.2),
         {"label_smoothing": 0.2}, "smoothing-weights-ignore"),
    Case("cross_entropy", (normal(6, 3), IGNORED, positive(3)), _ce(label_smoothing=0.2, reduction="sum"),
         {"label_smoothing": 0.2, "reduction": "sum"}, "smoothing-weights-ignore-sum"),
    Case("cross_entropy", (normal(5, 3), probabilities(5, 3), positive(3)), _ce(label_smoothing=0.3),
         {"label_smoothing": 0.3}, "probabilities-smoothing-weights"),
    Case("cross_entropy", (normal(2, 4, 3), ints(4, 2, 3)), _ce(), tag="3d"),
    Case("cross_entropy", (normal(2, 3, 2, 2), ints(3, 2, 2, 2), positive(3)), _ce(label_smoothing=0.1),
         {"label_smoothing": 0.1}, "4d-weights-smoothing"),
    Case("cross_entropy", (normal(2, 3, 4), probabilities(2, 3, 4)), _ce(), tag="3d-probabilities"),
    Case("cross_entropy", (normal(4), fixed(1), positive(4)), _ce(label_smoothing=0.1), {"label_smoothing": 0.1},
         "unbatched-weights"),
    Case("cross_entropy_unreduced", (normal(6, 3), IGNORED, positive(3)), _ce(reduction="none", label_smoothing=0.1),
         {"label_smoothing": 0.1}, "weights-ignore-smoothing"),
    Case("cross_entropy_unreduced", (normal(2, 4, 3), ints(4, 2, 3)), _ce(reduction="none"), tag="3d"),
    Case("cross_entropy_unreduced", (normal(3, 4), probabilities(3, 4)), _ce(reduction="none"), tag="probabilities"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradient_matches_finite_differences(case: Case) -> None:
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


def test_weighted_mean_divides_by_the_picked_weights() -> None:
    """nll_loss's weighted mean is Σ w_y · (−logp_y) / Σ w_y over the samples not ignored, as torch's."""
    logp = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]))
    y, w = np.array([0, 1, -100]), np.array([2.0, 1.0, 5.0])
    node = one_op("nll_loss", [logp, y, w])
    loss = NumpyBackend("float64").forward(node, [logp, y, w])
    assert loss.shape == () and np.isclose(loss, (2 * -np.log(0.5) + 1 * -np.log(0.8)) / 3.0)


def test_all_targets_ignored_gives_nan_as_torch() -> None:
    logp, y = np.log(np.full((2, 3), 1 / 3)), np.array([-100, -100])
    assert np.isnan(NumpyBackend("float64").forward(one_op("nll_loss", [logp, y]), [logp, y]))


def test_float32_stays_float32() -> None:
    backend = NumpyBackend("float32")
    z, y, w = np.ones((3, 4), dtype=np.float32), np.array([0, 3, -100]), np.ones(4, dtype=np.float32)
    for op, attrs in (("cross_entropy", {"label_smoothing": 0.1}), ("nll_loss", {}), ("cross_entropy_unreduced", {})):
        node = one_op(op, [z, y, w], attrs)
        out = backend.forward(node, [z, y, w])
        grads = backend.vjp(node, [z, y, w], out, np.ones(out.shape, dtype=np.float32))
        assert out.dtype == np.float32 and grads[0].dtype == np.float32, op
        assert grads[1] is None and grads[2] is None


def test_only_the_scalar_losses_are_losses() -> None:
    """A loss starts the backward pass from one number; the unreduced forms are ordinary ops."""
    assert {"nll_loss", "cross_entropy"} <= set(LOSSES)
    assert not {"nll_loss_unreduced", "cross_entropy_unreduced"} & set(LOSSES)


def test_out_of_range_class_is_one_clear_error() -> None:
    z, y = np.ones((2, 3)), np.array([0, 3])
    with pytest.raises(IndexError, match="target class 3 is out of range for 3 classes"):
        NumpyBackend("float64").forward(one_op("cross_entropy", [z, y]), [z, y])


@pytest.mark.parametrize(
    ("op", "shapes", "attrs", "says"),
    [
        ("nll_loss", [(4, 3), (4,)], {"reduction": "none"}, "use the op nll_loss_unreduced"),
        ("cross_entropy", [(4, 3), (4,)], {"reduction": "none"}, "use the op cross_entropy_unreduced"),
        ("cross_entropy", [(4, 3), (4,)], {"reduction": "max"}, "reduction must be"),
        ("nll_loss", [(4, 3), (4, 3)], {}, r"class indices \(4,\), got \(4, 3\)"),
        ("cross_entropy", [(2, 3, 5), (2, 3)], {}, r"class indices \(2, 5\) or class probabilities"),
        ("nll_loss", [(4, 3), (4,), (4,)], {}, "one per class"),
        ("cross_entropy_unreduced", [(4, 3), (4,), (2,)], {}, "one per class"),
        ("cross_entropy", [(4, 3), (4,)], {"label_smoothing": 1.5}, "label_smoothing"),
        ("nll_loss", [(4, 3), (4,)], {"ignore_index": 0.5}, "ignore_index"),
        ("nll_loss", [(), ()], {}, "scalar"),
    ],
)
def test_shape_rule_says_what_is_wrong(op: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any],
                                       says: str) -> None:
    with pytest.raises(ShapeError, match=says):
        one_op(op, [np.ones(s) for s in shapes], attrs)


@pytest.mark.torch
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_weighted_nll_loss_ends_a_graph_that_steps_back(backend: str) -> None:
    """group_norm → log_softmax → nll_loss with constant class weights and ignored targets: a session steps
    to the end of the backward pass, and the loss and every parameter gradient equal torch autograd's."""
    import torch
    import torch.nn.functional as F

    from propscope.backends import get_backend
    from propscope.debugger.session import Session
    from propscope.graph.ir import Graph
    from propscope.graph.model import Model

    rng = np.random.default_rng(7)
    arrays = {"z": rng.standard_normal((2, 4, 3)), "g": rng.standard_normal(4), "b": rng.standard_normal(4),
              "w": rng.uniform(0.5, 2.0, 4)}
    target = np.array([[0, -100, 3], [2, 1, -100]])
    g = Graph("nll")
    z, gamma, beta = (g.parameter(n, arrays[n].shape) for n in ("z", "g", "b"))
    weight = g.add("constant", name="w", shape=(4,))
    y = g.input("y", target.shape, role="target")
    h = g.add("group_norm", z, gamma, beta, name="gn", attrs={"num_groups": 2})
    lp = g.add("log_softmax", h, name="lp", attrs={"axis": 1})
    g.set_outputs(g.add("nll_loss", lp, y, weight, name="loss"))
    session = Session(Model(g, arrays), get_backend(backend, "float64"), {"y": target})
    session.run_to_end()

    t = {k: torch.tensor(v, requires_grad=k != "w") for k, v in arrays.items()}
    loss = F.nll_loss(F.log_softmax(F.group_norm(t["z"], 2, t["g"], t["b"]), 1), torch.tensor(target), t["w"])
    loss.backward()
    assert np.isclose(session.value("loss"), loss.item(), rtol=1e-12)
    for name in ("z", "g", "b"):
        np.testing.assert_allclose(session.grad(name), t[name].grad.numpy(), rtol=1e-10, atol=1e-12)
    assert session.grad("w") is None and session.grad("y") is None
