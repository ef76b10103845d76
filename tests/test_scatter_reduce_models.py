"""A graph network's message aggregation (PyTorch Geometric's `scatter(reduce=...)` is torch.scatter_reduce): each
node's incoming messages summed, averaged, maxed, minned or multiplied, with the node's own value or without it, read
from torch.export as the catalog's `scatter_reduce` and stepped on both backends to autograd's gradients (float64).
It was refused by name (only a sum at computed positions was read)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import propscope

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

EDGES = np.array([[0, 1, 2, 3, 4, 0, 2, 1], [1, 1, 0, 4, 4, 4, 3, 1]])  # node 1 and 4 take three messages, 2 none


class _Aggregate(torch.nn.Module):  # type: ignore[misc]
    """One message-passing layer: a Linear of each edge's source node, aggregated at its target node, by
    scatter_reduce (an index per element) or by index_reduce (one per row: torch's has no `sum`, index_add's)."""

    def __init__(self, reduce: str, include_self: bool, rows: bool = False) -> None:
        super().__init__()
        self.message, self.reduce, self.include_self, self.rows = torch.nn.Linear(4, 4), reduce, include_self, rows

    def forward(self, x: Any, edge_index: Any) -> Any:
        messages = self.message(x)[edge_index[0]]
        if self.rows:
            gathered = x.index_reduce(0, edge_index[1], messages, self.reduce, include_self=self.include_self)
        else:
            targets = edge_index[1].unsqueeze(1).expand(-1, messages.shape[1])
            gathered = x.scatter_reduce(0, targets, messages, self.reduce, include_self=self.include_self)
        return torch.tanh(gathered).sum(1)


@pytest.mark.filterwarnings("ignore:index_reduce\\(\\) is in beta")
@pytest.mark.parametrize("include_self", [True, False], ids=["with-self", "without-self"])
@pytest.mark.parametrize(("reduce", "rows"), [
    ("sum", False), ("mean", False), ("amax", False), ("amin", False), ("prod", False),
    # torch's index_reduce, read as scatter_reduce with its index along the rows (it was an unsupported op)
    ("mean", True), ("amax", True), ("amin", True), ("prod", True),
], ids=lambda v: {True: "index_reduce", False: "scatter_reduce"}.get(v, v) if isinstance(v, bool) else v)
def test_message_aggregation_steps_to_autograds_gradients(reduce: str, rows: bool, include_self: bool) -> None:
    torch.manual_seed(0)
    module = _Aggregate(reduce, include_self, rows).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    edges = torch.from_numpy(EDGES)
    for backend in ("numpy", "torch"):
        s = propscope.open_session(module, inputs=(x, edges), loss="mse", backend=backend)
        assert not s.model.unsupported_ops
        if (reduce, include_self) != ("sum", True):  # the plain sum stays an index_put with accumulate
            assert any(n.op.name == "scatter_reduce" and n.attrs["reduce"] == reduce for n in s.graph.ops)
        s.run_to_end()
        if (reduce, include_self) != ("sum", True):  # the chain rule says the node's own reduction's derivative
            step = next(s.trace.record(p.index) for p in s.steps
                        if p.phase == "backward" and p.node.op.name == "scatter_reduce")
            said = {t.role: t.formula for t in step.terms}
            assert {"amax": "largest", "amin": "smallest", "mean": "/ n", "prod": "Π", "sum": "∂L/∂out["}[reduce] \
                in said["src"]
        module.zero_grad()
        xi = x.clone().requires_grad_(True)
        torch.nn.functional.mse_loss(module(xi, edges), torch.from_numpy(s.batch["y"])).backward()
        for name, p in module.named_parameters():
            got = np.asarray(s.backend.to_numpy(s.grad(name)))
            np.testing.assert_allclose(got, p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{backend} {name}")
        np.testing.assert_allclose(np.asarray(s.backend.to_numpy(s.grad("x"))), xi.grad.numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=f"{backend} x")

