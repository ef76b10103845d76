"""A recommendation model's sparse features (nn.EmbeddingBag) exported with torch.export, as is and decomposed.

A tiny DLRM-style model: bags of item ids with offsets (sum with per-sample weights, mean with a padding id, max),
fixed-length bags from a 2-D batch, dense features through an MLP, all concatenated into logits. It must open with
every op supported and step to autograd's loss and gradients (float64) on both backends; without data, the
generated batch gives valid offsets (0, then ascending) and the model steps to the end.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
nn = torch.nn
pytestmark = pytest.mark.torch

IDS = np.array([1, 2, 4, 5, 4, 3, 2, 9, 0, 4, 7, 7])
OFFSETS = np.array([0, 3, 3, 7])  # four samples: bags of 3, 0 (empty), 4 and 5 ids
WEIGHTS = np.linspace(0.5, 1.6, IDS.size)
HISTORY = np.array([[1, 2, 3], [4, 4, 0], [9, 8, 7], [0, 0, 0]])  # fixed-length bags, one row per sample


class SparseFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.items = nn.EmbeddingBag(10, 4, mode="sum")
        self.categories = nn.EmbeddingBag(10, 4, mode="mean", padding_idx=4)
        self.strongest = nn.EmbeddingBag(10, 4, mode="max")
        self.history = nn.EmbeddingBag(10, 3, mode="mean")
        self.dense = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
        self.top = nn.Linear(4 * 4 + 3, 3)

    def forward(self, ids: Any, offsets: Any, weights: Any, history: Any, dense: Any) -> Any:
        parts = [self.items(ids, offsets, per_sample_weights=weights), self.categories(ids, offsets),
                 self.strongest(ids, offsets), self.history(history), self.dense(dense)]
        return self.top(torch.cat(parts, dim=1))


def inputs() -> tuple[np.ndarray, ...]:
    return IDS, OFFSETS, WEIGHTS, HISTORY, np.random.default_rng(0).standard_normal((4, 2))


@pytest.fixture(scope="module", params=[False, True], ids=["as_is", "decomposed"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    torch.manual_seed(0)
    model = SparseFeatures().double()
    with torch.no_grad():  # distinct table values: each bag's max row is clear
        for bag in (model.items, model.categories, model.strongest, model.history):
            bag.weight.add_(torch.linspace(-0.5, 0.5, bag.weight.numel(), dtype=torch.float64).reshape(
                bag.weight.shape))
    path = tmp_path_factory.mktemp("bags") / "bags.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, tuple(torch.from_numpy(a) for a in inputs()))
        if request.param:
            program = program.run_decompositions()
        torch.export.save(program, str(path))
    return path, model


def test_opens_with_every_op_supported(exported: tuple[Path, Any]) -> None:
    model = open_model(exported[0])
    assert not model.unsupported_ops, model.warnings
    assert sum(n.op.name == "embedding_bag" for n in model.graph) == 4


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_steps_to_autograds_gradients(exported: tuple[Path, Any], backend: str) -> None:
    path, model = exported
    y = np.array([0, 2, 1, 2])
    loss, grads, input_grads = zoo.autograd_reference(model, inputs(), y)
    names = ("ids", "offsets", "weights", "history", "dense")
    s = open_session(path, backend=backend, dtype="float64", data={**dict(zip(names, inputs(), strict=True)), "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    assert abs(float(s.value(s.loss_node.name)) - loss) < 1e-12
    for name, want in grads.items():
        np.testing.assert_allclose(s.grad(name), want, rtol=1e-10, atol=1e-13, err_msg=name)
    np.testing.assert_allclose(s.grad("weights"), input_grads[2], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(s.grad("dense"), input_grads[4], rtol=1e-10, atol=1e-13)


def test_a_generated_batch_has_valid_offsets_and_steps_to_the_end(exported: tuple[Path, Any]) -> None:
    s = open_session(exported[0], dtype="float64", loss="cross_entropy")
    offsets = s.batch["offsets"]
    assert offsets[0] == 0 and np.all(np.diff(offsets) >= 0) and offsets[-1] <= IDS.size
    s.run_to_end()
    assert np.isfinite(float(s.value(s.loss_node.name)))
