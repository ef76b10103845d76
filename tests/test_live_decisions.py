"""A module whose forward decides by its tensors' values (`if h.sum() > 0`, `range(int(n))`, `.item()`), which
torch.export cannot trace symbolically, opens along the path its inputs take (`propscope/graph/readers/decisions.py`):
each decision is named with its line, the graph is that path with autograd's numbers, and the session refuses other
data and training, where the path may change."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import propscope
from propscope.debugger.trainer import TrainingError
from propscope.graph.datasets import DataError
from propscope.graph.errors import ModelFormatError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:propscope.*decided by tensor values:UserWarning")
nn = torch.nn


class _Deciding(nn.Module):
    """A loop as long as the count of positive activations, then a branch on their sum; a batch norm and a dropout,
    whose running statistics and random draws the tracing must leave as they were."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)
        self.drop = nn.Dropout(0.25)

    def forward(self, x: Any) -> Any:
        h = self.norm(self.a(x))
        steps = int((h > 0).sum()) // 4
        for _ in range(steps):
            h = torch.tanh(h) * 1.5
        h = torch.relu(h) if h.sum().item() > 0 else torch.sigmoid(h)
        return self.b(self.drop(h))


def _inputs(seed: int) -> Any:
    return torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _autograd(module: Any, x: Any, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    m = copy.deepcopy(module)
    loss = nn.functional.cross_entropy(m(x), torch.from_numpy(y))
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in m.named_parameters()}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_forward_deciding_by_values_opens_along_its_inputs_path_with_autograds_numbers(backend: str) -> None:
    torch.manual_seed(0)
    module = _Deciding().double().eval()
    x, y = _inputs(1), np.array([0, 1, 2, 0, 1])
    with torch.no_grad():
        h = module.norm(module.a(x))
    positive = int((h > 0).sum())
    steps = positive // 4
    assert steps >= 1
    with pytest.warns(UserWarning, match=r"^propscope: _Deciding: its forward decided by tensor values 2 time"):
        s = propscope.open_session(module, inputs=x, data={"y": y}, loss="cross_entropy", dtype="float64",
                                   backend=backend)
    decided = s.model.decisions
    assert len(decided) == 2
    assert decided[0].startswith("test_live_decisions.py:") and "int((h > 0).sum())" in decided[0]
    assert decided[0].endswith(f"→ {positive}")
    assert "if h.sum().item() > 0 else" in decided[1]
    assert any("decided by tensor values 2 time(s)" in w for w in s.model.warnings)
    ops = [n.op.name for n in s.graph.ops]
    assert ops.count("tanh") == steps  # the loop unrolled as these inputs ran it
    assert "compare" not in ops and "sum" not in ops  # what computed the decided values is gone with them
    s.run_to_end()
    loss, grads = _autograd(module, x, y)
    assert float(s.backend.to_numpy(s.value(s.loss_node.name))) == pytest.approx(loss, rel=1e-12)
    for name, want in grads.items():
        np.testing.assert_allclose(s.backend.to_numpy(s.grad(name)), want, rtol=1e-9, atol=1e-12, err_msg=name)


def test_the_module_its_buffers_and_torchs_random_state_are_left_as_they_were() -> None:
    torch.manual_seed(0)
    module = _Deciding().train()  # batch statistics and a dropout: the run, the trace and the check must agree
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rng = torch.get_rng_state()
    s = propscope.open_session(module, inputs=_inputs(2).float())
    assert s.model.decisions
    assert torch.equal(torch.get_rng_state(), rng)
    assert module.training and type(module) is _Deciding
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_other_data_and_training_are_refused_in_one_line_the_same_data_is_not() -> None:
    torch.manual_seed(0)
    module = _Deciding().double().eval()
    x = _inputs(3)
    s = propscope.open_session(module, inputs=x, data={"y": np.array([0, 1, 2, 0, 1])}, loss="cross_entropy",
                               dtype="float64")
    s.set_batch({"x": x.numpy(), "y": np.array([2, 2, 2, 0, 0])})  # new labels on the same inputs: the same path
    with pytest.raises(DataError, match=r"traced along the path its inputs take .* input 'x' differs from those "
                                        r"it was traced on: open the module again on this data$"):
        s.set_batch({"x": _inputs(4).numpy(), "y": np.array([0, 1, 2, 0, 1])})
    with pytest.raises(TrainingError, match=r"a step that changes the weights may change the path"):
        s.train(1)
    assert "\n" not in str(s.model.warnings[-1])


class _TracedOtherwise(nn.Module):
    """A forward that decides once more on each call (its class keeps a count: an instance's own attributes are put
    back after each call propscope makes), so the trace, a later call, decides once more than the run: no path to
    replay. (A forward that asks `torch.compiler.is_exporting()` is run as export traces it: that no longer parts
    them.)"""

    calls = 0

    def forward(self, x: Any) -> Any:
        type(self).calls += 1
        for _ in range(type(self).calls):
            x = x * 2 if x.sum() > 0 else -x
        return x


def test_a_path_that_cannot_be_replayed_is_refused_with_torchs_reason_and_ours() -> None:
    with pytest.raises(ModelFormatError, match=r"^_TracedOtherwise: torch.export could not trace it on these inputs "
                                               r"\(.*\); traced along the path these inputs take instead: its forward "
                                               r"took its decisions in another order") as caught:
        propscope.open_session(_TracedOtherwise(), inputs=torch.ones(3))
    assert "\n" not in str(caught.value)


@pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")
def test_the_window_says_in_its_title_that_it_shows_one_path(qtbot: Any) -> None:
    from propscope.gui.main_window import MainWindow

    torch.manual_seed(0)
    s = propscope.open_session(_Deciding().eval(), inputs=_inputs(5).float())
    window = MainWindow(s)
    qtbot.addWidget(window)
    assert window.windowTitle() == "propscope — _Deciding (numpy/float32) · the path its inputs took (2 decisions by " \
                                   "value)"
    plain = MainWindow(propscope.open_session("xor"))
    qtbot.addWidget(plain)
    assert "path" not in plain.windowTitle()
