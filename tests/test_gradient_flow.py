"""Backward on any graph: a gradient flows only along differentiable inputs.

An op that feeds nothing but an index, a mask or a loss's target (a slice of position ids, a comparison)
gets no backward step and the session says no gradient flows there; nothing raises. A weight used twice
(a tied embedding) receives both contributions, and the step records say which of them each one is.
"""

from __future__ import annotations

import numpy as np
import pytest

from propscope.backends import get_backend
from propscope.debugger.session import Session
from propscope.debugger.steps import BackwardStep
from propscope.graph.ir import Graph
from propscope.graph.model import Model


def tied_model() -> Model:
    """Token ids and a slice of position ids, each looked up in a table; the token table is also the output
    layer (GPT-2's tied embedding); a mask computed from the hidden values scales it (no gradient into the mask)."""
    g = Graph("tied")
    ids = g.input("ids", (2, 3))
    positions = g.add("constant", name="positions", shape=(1, 4))
    table, pos_table, bias = g.parameter("E", (5, 4)), g.parameter("P", (4, 4)), g.parameter("b", (5,))
    pos_ids = g.add("slice", positions, name="pos_ids",
                    attrs={"axes": (1,), "starts": (0,), "stops": (3,), "steps": (1,)})
    tokens = g.add("embedding", ids, table, name="tokens")
    where = g.add("embedding", pos_ids, pos_table, name="where")
    hidden = g.add("add", tokens, where, name="hidden")
    zero = g.add("constant", name="zero", shape=())
    positive = g.add("compare", hidden, zero, name="positive", attrs={"op": "gt"})
    gated = g.add("where", positive, hidden, zero, name="gated")
    logits = g.add("linear", gated, table, bias, name="logits", attrs={"transpose_weight": True})
    g.set_outputs(logits)
    rng = np.random.default_rng(0)
    arrays = {"E": rng.standard_normal((5, 4)), "P": rng.standard_normal((4, 4)), "b": rng.standard_normal(5),
              "positions": np.arange(4.0).reshape(1, 4), "zero": np.array(0.0)}
    return Model(g, arrays)


def batch() -> dict[str, np.ndarray]:
    return {"ids": np.array([[0, 3, 4], [2, 2, 1]]), "y": np.array([1, 0, 4, 2, 2, 3])}


@pytest.mark.parametrize("backend", ["numpy", pytest.param("torch", marks=pytest.mark.torch)])
def test_index_and_mask_branches_get_no_backward_step(backend: str) -> None:
    session = Session(_flattened(tied_model()), get_backend(backend, "float64"), batch(), "cross_entropy")
    session.run_to_end()  # no KeyError: every planned backward step has a gradient to pass on
    backward = [st.node.name for st in session.steps if st.phase == "backward"]
    assert "pos_ids" not in backward and "positive" not in backward
    assert not session.gradient_flows("pos_ids") and not session.gradient_flows("positive")
    assert session.gradient_flows("hidden") and session.gradient_flows("E")
    assert session.grad("pos_ids") is None and session.grad("positive") is None


def _flattened(model: Model) -> Model:
    """Cross-entropy takes (N, C) logits: (batch, position) flattened into N."""
    g = model.graph
    logits = g["logits"]
    flat = g.add("reshape", logits, name="flat", attrs={"shape": (-1, 5)})
    g.set_outputs(flat)
    return model


def test_a_tied_weight_gets_both_contributions_in_order() -> None:
    session = Session(_flattened(tied_model()), get_backend("numpy", "float64"), batch(), "cross_entropy")
    session.run_to_end()
    terms = [t for r in session.trace.records if isinstance(r, BackwardStep) for t in r.terms if t.input.name == "E"]
    assert [(t.arrival, t.consumers) for t in terms] == [(1, 2), (2, 2)]
    np.testing.assert_allclose(terms[1].total, terms[0].contribution + terms[1].contribution, rtol=1e-15)
    np.testing.assert_array_equal(session.grad("E"), terms[1].total)


@pytest.mark.torch
def test_the_tied_gradient_is_autograds() -> None:
    import torch

    model, data = tied_model(), batch()
    session = Session(_flattened(model), get_backend("numpy", "float64"), data, "cross_entropy")
    session.run_to_end()
    E, P, b = (torch.tensor(model.arrays[k], requires_grad=True) for k in ("E", "P", "b"))
    hidden = E[torch.tensor(data["ids"])] + P[torch.arange(3)]
    gated = torch.where(hidden > 0, hidden, torch.zeros(()))
    logits = (gated @ E.T + b).reshape(-1, 5)
    torch.nn.functional.cross_entropy(logits, torch.tensor(data["y"])).backward()
    for name, t in (("E", E), ("P", P), ("b", b)):
        np.testing.assert_allclose(session.grad(name), t.grad.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


def test_cross_entropy_on_image_shaped_logits_takes_per_pixel_class_ids() -> None:
    """Segmentation logits (N, C, H, W) as torch lays them out: targets (N, H, W), classes on axis 1."""
    g = Graph("segment")
    x = g.input("x", (2, 3, 4, 5))
    w = g.parameter("W", (4, 3, 1, 1))
    g.set_outputs(g.add("conv2d", x, w, name="logits"))
    rng = np.random.default_rng(1)
    model = Model(g, {"W": rng.standard_normal((4, 3, 1, 1))})
    data = {"x": rng.standard_normal((2, 3, 4, 5)), "y": rng.integers(0, 4, (2, 4, 5))}
    session = Session(model, get_backend("numpy", "float64"), data, "cross_entropy")
    session.run_to_end()
    try:
        import torch
    except ImportError:
        return
    W = torch.tensor(model.arrays["W"], requires_grad=True)
    logits = torch.nn.functional.conv2d(torch.tensor(data["x"]), W)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(data["y"]))
    loss.backward()
    assert abs(float(session.value(session.loss_node.name)) - float(loss)) < 1e-12
    np.testing.assert_allclose(session.grad("W"), W.grad.numpy(), rtol=1e-12, atol=1e-14)
