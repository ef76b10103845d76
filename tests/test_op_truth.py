"""Where propscope's numbers were not torch's: each model exported with torch.export, read back and run on both
backends, its loss and every parameter's gradient checked against torch autograd of the module itself.

- max(x, dim) with tied maxima: torch sends the whole gradient to the index it returns (the first), not shared;
  sort and topk leave ties where torch's CPU kernels do (std::sort, std::nth_element), and the gradient follows.
- PReLU, Threshold, RReLU in eval mode and atan2 open (they were refused), with torch's conventions at the kinks.
- A cast to float16 / bfloat16 rounds through it, values (1e10 is inf in float16) and gradients.
- std over a constant channel is exactly 0 in float32, as torch's (Welford, in double).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
pytestmark = pytest.mark.torch


class Weighted(nn.Module):
    """y = fn(x · w): w differs per position, so where a gradient goes shows in ∂L/∂w."""

    def __init__(self, fn: Any, width: int = 4) -> None:
        super().__init__()
        self.fn = fn
        self.w = nn.Parameter(torch.tensor([1.0, 2.0, 4.0, 8.0, 3.0, 5.0][:width]))

    def forward(self, x: Any) -> Any:
        return self.fn(x * self.w)


def _prelu(h: Any) -> Any:
    return F.prelu(h, torch.tensor([0.25], dtype=h.dtype))


TIES = np.array([[1.0, 0.5, 0.25, 0.125], [0.0, 0.0, 0.0, 0.0], [0.5, 0.25, 0.25, 0.125]])  # x · w: 1, 1, 1, 1 ...
KINKS = np.array([[-6.0, -1.0, -0.5, 0.0], [0.5, 1.0, 3.0, 20.0], [0.1, -0.1, 0.0, 2.0]])
CASES: dict[str, tuple[Any, np.ndarray]] = {
    "max_dim": (lambda h: h.max(-1, keepdim=True).values, TIES),
    "max_dim_squeezed": (lambda h: h.max(1).values[:, None] * h, TIES),
    "min_dim": (lambda h: (-h).min(-1).values, TIES),
    "topk": (lambda h: h.topk(2, -1).values, TIES),
    "sort": (lambda h: h.sort(-1, descending=True).values[:, :2], TIES),
    "amax_shares": (lambda h: h.amax(-1), TIES),
    "prelu": (_prelu, KINKS),
    "threshold": (lambda h: F.threshold(h, 0.1, -2.0), KINKS),
    "rrelu_eval": (lambda h: F.rrelu(h, training=False), KINKS),
    "atan2": (lambda h: torch.atan2(h, h.flip(-1) - 0.5), KINKS),
    "atan2_origin": (lambda h: torch.atan2(h[:, 1:3] - h[:, 1:3], h[:, 2:] * 0), KINKS),
    "half": (lambda h: (h * 1e2).half().to(h.dtype) * 1e-2 + h.bfloat16().to(h.dtype) * h, KINKS),
}


def _export(fn: Any, x: np.ndarray, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(Weighted(fn), (torch.from_numpy(x).float(),)), str(path))


def _autograd(fn: Any, x: np.ndarray, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The prediction, the MSE loss against zeros and ∂L/∂w of the module itself, in `dtype`."""
    model = Weighted(fn).to(dtype)
    out = model(torch.from_numpy(x).to(dtype))
    loss = F.mse_loss(out, torch.zeros_like(out))
    loss.backward()
    return out.detach().double().numpy(), loss.detach().double().numpy(), model.w.grad.double().numpy()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", list(CASES))
def test_gradients_are_torchs(name: str, backend: str, tmp_path: Path) -> None:
    fn, x = CASES[name]
    _export(fn, x, tmp_path / f"{name}.pt2")
    model = open_model(tmp_path / f"{name}.pt2")
    assert not [n for n in model.graph if n.op.name == "unsupported"], model.warnings
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-6)):
        out, _, grad = _autograd(fn, x, getattr(torch, dtype))
        s = open_session(model, backend=backend, dtype=dtype, data={"x": x, "y": np.zeros(out.shape)}, loss="mse")
        s.run_to_end()
        np.testing.assert_allclose(s.value(s.prediction_node.name), out, rtol=tol, atol=tol, err_msg=dtype)
        np.testing.assert_allclose(s.grad("w"), grad, rtol=tol, atol=tol, err_msg=f"{name} {backend} {dtype}")


def test_a_cast_to_float16_overflows_as_torchs(tmp_path: Path) -> None:
    """1e10 is inf in float16: torch's loss is NaN (inf − inf), and so is propscope's, in float64 sessions too."""
    x = np.array([[1e10, 1.0, -2.0, 3.0]])
    fn = lambda h: h.half().float() - h.half().float().amax(-1, keepdim=True)  # noqa: E731
    _export(fn, x, tmp_path / "overflow.pt2")
    _, loss, _ = _autograd(fn, x, torch.float64)
    assert np.isnan(loss)
    for dtype in ("float32", "float64"):
        s = open_session(tmp_path / "overflow.pt2", dtype=dtype, data={"x": x, "y": np.zeros((1, 4))}, loss="mse")
        s.run_to_end()
        assert s.loss_node is not None and np.isnan(s.value(s.loss_node.name)), dtype


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_std_of_a_constant_channel_is_zero(dtype: str, tmp_path: Path) -> None:
    """x / x.std(0) with one channel constant: torch's std is exactly 0 there, so the quotient is inf/NaN."""
    from propscope.backends.numpy.reduce import std, var

    x = np.random.default_rng(0).standard_normal((8, 4)).astype(dtype)
    x[:, 2] = 0.7
    for kernel, torch_fn in ((std, torch.std), (var, torch.var)):
        got = kernel.forward(x, 0, False, 1.0)
        want = torch_fn(torch.from_numpy(x), dim=0).numpy()
        assert got[2] == 0.0 and got.dtype == x.dtype
        np.testing.assert_allclose(got, want, rtol=1e-15 if dtype == "float64" else 0, atol=0)


def test_bfloat16_rounding_is_torchs() -> None:
    """bfloat16, which NumPy lacks: rounded on float32's bits to nearest even, as torch (and ml_dtypes) round."""
    from propscope.graph.ops.shape import round_to_float

    rng = np.random.default_rng(0)
    with np.errstate(over="ignore"):
        x = (rng.standard_normal(20000) * 10.0 ** rng.integers(-40, 39, 20000)).astype(np.float32)
    x = np.concatenate([x, np.float32([np.inf, -np.inf, np.nan, 3.3895e38, 3.4e38, 0.0, -0.0, 1e-40, 1.00390625])])
    for values in (x, x.astype(np.float64) * 1.0000001):
        want = torch.from_numpy(values).bfloat16().to(torch.from_numpy(values).dtype).numpy()
        np.testing.assert_array_equal(round_to_float(values, "bfloat16"), want)
        half = torch.from_numpy(values).half().to(torch.from_numpy(values).dtype).numpy()
        np.testing.assert_array_equal(round_to_float(values, "float16"), half)


def test_rrelu_in_training_mode_is_refused_by_name(tmp_path: Path) -> None:
    _export(lambda h: F.rrelu(h, training=True), KINKS, tmp_path / "rrelu.pt2")
    model = open_model(tmp_path / "rrelu.pt2")
    (placeholder,) = [n for n in model.graph if n.op.name == "unsupported"]
    assert "in training mode (a random slope" in placeholder.meta.get("reason", ""), placeholder.meta
