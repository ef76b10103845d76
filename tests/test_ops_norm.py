"""The norm family (batch, layer, group/instance and RMS norm): gradient check, torch parity, backends agree.

batch_norm and layer_norm keep their original cases in test_nn_ops.py; the rows here run them through
the shared op-check helper as well, since their code moved into this family.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from opcheck import Case, check_against_torch, check_backends_agree, check_gradient, normal, one_op, positive

from propscope.graph.errors import ShapeError


def _group(groups: int, eps: float = 1e-5) -> Any:
    return lambda F, t, x, w, b: F.group_norm(x, groups, w, b, eps)


def _rms(shape: tuple[int, ...], eps: float | None = None) -> Any:
    return lambda F, t, x, w: F.rms_norm(x, shape, w, eps)


CASES = [
    # group_norm: several groups, one group (the whole sample), 3-D and 2-D inputs, eps
    Case("group_norm", (normal(2, 6, 4, 3), normal(6), normal(6)), _group(3), {"num_groups": 3}, "4d-3-groups"),
    Case("group_norm", (normal(2, 4, 5), normal(4), normal(4)), _group(1), {"num_groups": 1}, "one-group"),
    Case("group_norm", (normal(3, 4, 5), normal(4), normal(4)), _group(2, 1e-3), {"num_groups": 2, "eps": 1e-3},
         "3d-eps"),
    Case("group_norm", (normal(5, 6), normal(6), normal(6)), _group(2), {"num_groups": 2}, "2d"),
    Case("group_norm", (normal(2, 4, 2, 3, 2), normal(4), normal(4)), _group(2), {"num_groups": 2}, "5d"),
    # instance norm is group norm with one group per channel (how the readers map InstanceNormalization)
    Case("group_norm", (normal(2, 3, 4, 5), normal(3), normal(3)),
         lambda F, t, x, w, b: F.instance_norm(x, weight=w, bias=b, eps=1e-5), {"num_groups": 3}, "instance-norm"),
    # rms_norm: the last axis, two axes, machine epsilon (None) and a given one
    Case("rms_norm", (normal(3, 4, 5), normal(5)), _rms((5,)), tag="last-axis"),
    Case("rms_norm", (normal(2, 3, 4), normal(3, 4)), _rms((3, 4), 1e-3), {"normalized_shape": (3, 4), "eps": 1e-3},
         "two-axes-eps"),
    Case("rms_norm", (normal(4, 6), normal(6)), _rms((6,)), {"normalized_shape": 6}, "int-shape"),
    # the moved ones, through the same helper
    Case("batch_norm", (normal(4, 3, 5), normal(3), normal(3), normal(3), positive(3)),
         lambda F, t, x, w, b, m, v: F.batch_norm(x, None, None, w, b, True, 0.1, 1e-5), tag="train-3d"),
    Case("batch_norm", (normal(4, 3, 2, 2), normal(3), normal(3), normal(3), positive(3)),
         lambda F, t, x, w, b, m, v: F.batch_norm(x, m, v, w, b, False, 0.1, 1e-5), {"training": False}, "eval-4d"),
    Case("layer_norm", (normal(2, 3, 4), normal(4), normal(4)), lambda F, t, x, w, b: F.layer_norm(x, (4,), w, b),
         tag="last-axis"),
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


@pytest.mark.parametrize(
    ("op", "shapes", "attrs", "says"),
    [
        ("group_norm", [(2, 6, 4), (6,), (6,)], {"num_groups": 4}, "do not split into 4 groups"),
        ("group_norm", [(2, 6, 4), (6,), (6,)], {"num_groups": 0}, "positive integer"),
        ("group_norm", [(2, 6, 4), (6,), (6,)], {"num_groups": 2.0}, "positive integer"),
        ("group_norm", [(6,), (6,), (6,)], {"num_groups": 2}, "batch, channels"),
        ("group_norm", [(2, 6, 4), (4,), (6,)], {"num_groups": 2}, "one per channel"),
        ("rms_norm", [(2, 3, 4), (3,)], {}, "last axes"),
        ("rms_norm", [(2, 3, 4), (4,)], {"normalized_shape": (3, 4)}, "normalized shape"),
        ("rms_norm", [(2, 3, 4), (4,)], {"eps": "small"}, "eps"),
        ("layer_norm", [(2, 3), (4,), (4,)], {}, "last axes"),
    ],
)
def test_shape_rule_says_what_is_wrong(op: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any],
                                       says: str) -> None:
    with pytest.raises(ShapeError, match=says):
        one_op(op, [np.ones(s) for s in shapes], attrs)


def test_group_norm_keeps_float32() -> None:
    from propscope.backends.numpy import NumpyBackend

    x, w, b = (np.ones(s, dtype=np.float32) for s in ((2, 4, 3), (4,), (4,)))
    x[0, 0, 0] = 3.0
    node = one_op("group_norm", [x, w, b], {"num_groups": 2})
    backend = NumpyBackend("float32")
    out = backend.forward(node, [x, w, b])
    grads = backend.vjp(node, [x, w, b], out, np.ones_like(out))
    assert out.dtype == np.float32 and all(g is not None and g.dtype == np.float32 for g in grads)


@pytest.mark.parametrize("training", [True, False])
def test_a_batch_norm_step_shows_the_derivative_of_its_mode(training: bool) -> None:
    """A network in eval mode divides by the running σ alone: its backward step says that formula, not the
    training one beside it (which also holds the batch's mean and variance), and the other way round."""
    from propscope.debugger import open_session
    from propscope.graph import Graph, Model

    rng = np.random.default_rng(0)
    g = Graph("bn")
    x = g.input("x", (4, 3))
    leaves = [g.parameter(n, (3,)) for n in ("gamma", "beta")] + [g.add("constant", name=n, shape=(3,))
                                                                  for n in ("mean", "var")]
    g.set_outputs(g.add("batch_norm", x, *leaves, name="bn", attrs={"training": training}))
    arrays = {"gamma": rng.normal(size=3), "beta": rng.normal(size=3), "mean": rng.normal(size=3),
              "var": rng.uniform(1, 2, size=3)}
    s = open_session(Model(g, arrays, batch={"x": rng.normal(size=(4, 3))}), loss="mse", dtype="float64")
    s.run_to_end()
    step = next(s.trace.record(i) for i in range(len(s.steps))
                if s.steps[i].phase == "backward" and s.steps[i].node.name == "bn")
    formula = next(t.formula for t in step.terms if t.input.name == "x")
    assert ("σ²_run" in formula) != training and ("mean(∂L/∂xₙ)" in formula) == training
    assert "training:" not in formula and "eval:" not in formula
