"""Tensors a model makes from nothing (ones_like, new_full, eye...), read as the constants they are.

`torch.ones_like(x)` was read as zeros (the op's name was cut at its last underscore, `like`, which names no fill),
silently: every model that scales by `ones_like` of a buffer or of an activation (polar's unit lengths in a rotary
embedding, masks of ones) computed other numbers than torch. Each creation op here, of a buffer and of a value the
data computes, from the live module and from its `.pt2`, must give torch's values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.debugger import open_session

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


class Made(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)
        self.register_buffer("scale", torch.tensor([0.5, -1.0, 2.0, 3.0]))

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        made = (torch.ones_like(self.scale) * 2 + torch.ones_like(h) * h + h.new_ones(4) * 3 + torch.full_like(h, 5.0)
                + h.new_full((2, 4), -1.5) + torch.zeros_like(h) + h.new_zeros(4) + torch.ones(4) * 0.25)
        return made * h + h @ (torch.eye(4, dtype=h.dtype) * 2)


@pytest.mark.parametrize("source", ["module", "pt2"])
def test_made_tensors_hold_torchs_values(source: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Made().double().eval()
    x = np.random.default_rng(0).standard_normal((2, 3))
    target: Any = model
    if source == "pt2":
        target = tmp_path / "made.pt2"
        torch.export.save(torch.export.export(model, (torch.from_numpy(x),)), str(target))
    s = open_session(target, inputs=torch.from_numpy(x), dtype="float64", loss="none") if source == "module" else \
        open_session(target, dtype="float64", loss="none", data={"x": x})
    s.run_to_end()
    want = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want, rtol=1e-14)
