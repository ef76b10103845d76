"""torch's dynamo exporter lifts the numbers in a module's code into initializers (`x ** 3`'s 3.0 as `val_1`,
tanh-GELU's 0.044715) beside the parameters, and records in each parameter's value_info that it is one. Those
numbers are constants, as in the module: no gradient is taken for them and training leaves them (read as parameters,
`x ** val_1` had the derivative x³·ln x with respect to its exponent, NaN for every x < 0, and training stopped at the
first step); a learnable scalar of the module (`scale`) stays a parameter, and a file without that record reads as
before."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from propscope.debugger import open_session  # noqa: E402

pytestmark = pytest.mark.torch


class TanhGelu(torch.nn.Module):
    """GPT-2's and ALBERT's gelu_new after a linear layer, times a learnable scale."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.scale = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        return 0.5 * h * (1 + torch.tanh(0.7978845608 * (h + 0.044715 * torch.pow(h, 3.0)))) * self.scale


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, np.ndarray]:
    torch.manual_seed(0)
    module = TanhGelu()
    x = torch.randn(6, 4)
    path = tmp_path_factory.mktemp("lifted") / "gelu.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=True, verbose=False)
    return path, module, x.numpy()


def test_the_lifted_numbers_are_constants_and_the_scale_a_parameter(exported: tuple[Path, Any, np.ndarray]) -> None:
    path, module, x = exported
    s = open_session(path, data={"x": x, "y": np.array([0, 1, 2, 0, 1, 2])}, dtype="float64")
    assert sorted(p.name for p in s.graph.parameters) == ["fc.bias", "fc.weight", "scale"]
    s.run_to_end()
    reference = module.double()
    xt = torch.from_numpy(x.astype(np.float64))
    loss = torch.nn.functional.cross_entropy(reference(xt), torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    assert abs(float(s.value(s.loss_node.name)) - float(loss.detach())) < 1e-6  # the file's numbers are float32
    for name, p in reference.named_parameters():
        got = np.asarray(s.grad(name))
        assert np.all(np.isfinite(got)), name
        assert np.max(np.abs(got - p.grad.numpy())) <= 1e-5 * max(1.0, float(np.max(np.abs(p.grad.numpy())))), name


def test_training_on_it_stays_finite(exported: tuple[Path, Any, np.ndarray]) -> None:
    path, _, x = exported
    s = open_session(path, data={"x": x, "y": np.array([0, 1, 2, 0, 1, 2])})
    history = s.train(epochs=3, lr=0.05)
    assert all(np.isfinite(h.loss) for h in history)
