"""Why `propscope compare` parts NumPy and torch at S3D's last Inception blocks (2.8e-4 in float64): a max pool whose
windows hold exact ties on one backend and values one rounding apart on the other.

At 16 frames the clip is 2 frames deep there, so a 3-deep max pool with padding 1 (features.14.branch3) sees the
whole time axis from both frames: its outputs at t=0 and t=1 are copies. A 1×1×1 convolution maps copies to copies
in exact arithmetic, and NumPy's product keeps them equal; torch's CPU GEMM rounds some output columns (the last,
ragged tile of positions) in another order, so some copies come out one ulp apart. The next max pool
(features.15.branch3) gives a tied window's gradient to the first of the tie on both backends, as torch does, but on
torch the copies are no longer tied, so the whole of a window's gradient goes to the other frame.

The tests here pin what was ruled out and what was found, with a three-op model that does what S3D does:
  * the torch backend's max pool (−∞ padding, then unpadded pooling) routes ties exactly as torch's padded kernel;
  * the torch backend's gradients are torch autograd's of the module, bit for bit, at every node;
  * NumPy's max-pool gradient is torch's own on NumPy's values: the backends part on the values, not the derivative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
nn = torch.nn

import propscope  # noqa: E402
from propscope.backends import get_backend  # noqa: E402
from propscope.backends.torch.conv3d import max_pool3d  # noqa: E402
from propscope.debugger.compare import replay  # noqa: E402

pytestmark = pytest.mark.torch


def _copies_model(seed: int) -> tuple[Any, Any]:
    """S3D's tail in three ops: a pool that makes the 2-frame axis two copies, a 1×1×1 conv, a pool that ties them."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.MaxPool3d(3, 1, 1), nn.Conv3d(16, 4, 1, bias=False), nn.MaxPool3d(3, 1, 1),
                          nn.Flatten(), nn.Linear(4 * 2 * 3 * 3, 3)).double()
    return model, torch.randn(1, 16, 2, 3, 3, dtype=torch.float64)


def _session(model: Any, x: Any) -> Any:
    s = propscope.open_session(model, inputs=x.numpy(), data={"y": np.array([1])}, loss="cross_entropy")
    s.run_to_end()
    return s


def _autograd(model: Any, x: Any) -> dict[str, np.ndarray]:
    """The module's own forward and backward: each layer's output value and gradient."""
    outputs: dict[str, Any] = {}

    def keep(name: str) -> Any:
        def hook(_module: Any, _inputs: Any, out: Any) -> None:
            out.retain_grad()
            outputs[name] = out
        return hook

    for name in ("pool", "conv", "pool2"):
        model[{"pool": 0, "conv": 1, "pool2": 2}[name]].register_forward_hook(keep(name))
    F.cross_entropy(model(x.clone().requires_grad_(True)), torch.tensor([1])).backward()
    return {f"{kind}/{name}": (t if kind == "value" else t.grad).detach().numpy()
            for name, t in outputs.items() for kind in ("value", "grad")}


@pytest.mark.parametrize("padding,ceil_mode", [(1, False), (1, True), (0, True)])
def test_torch_max_pool3d_routes_ties_as_torchs_padded_kernel(padding: int, ceil_mode: bool) -> None:
    # ReLU zeros and repeated frames: most windows hold ties, some only padding and zeros
    torch.manual_seed(0)
    frame = F.relu(torch.randn(1, 3, 1, 5, 6, dtype=torch.float64))
    x = torch.cat([frame, frame, F.relu(torch.randn(1, 3, 2, 5, 6, dtype=torch.float64))], dim=2)
    upstream = None
    grads = []
    for pool in (lambda t: max_pool3d(t, 3, 2, padding, 1, ceil_mode),
                 lambda t: F.max_pool3d(t, 3, 2, padding, 1, ceil_mode)):
        leaf = x.clone().requires_grad_(True)
        out = pool(leaf)
        upstream = torch.randn_like(out) if upstream is None else upstream
        out.backward(upstream)
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1])


def test_the_first_pool_makes_the_frames_copies_and_numpy_keeps_them_tied() -> None:
    s = _session(*_copies_model(0))
    pooled, conv = (np.asarray(s.trace.value(name, s.cursor)) for name in ("max_pool3d", "conv3d"))
    assert np.array_equal(pooled[:, :, 0], pooled[:, :, 1])
    assert np.array_equal(conv[:, :, 0], conv[:, :, 1])  # so every window of the second pool holds a tie


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_backend_is_torch_autograd_bit_for_bit(seed: int) -> None:
    model, x = _copies_model(seed)
    s = _session(model, x)
    ref = _autograd(model, x)
    theirs = replay(s, get_backend("torch", "float64"))
    for node, layer in (("max_pool3d", "pool"), ("conv3d", "conv"), ("max_pool3d_1", "pool2")):
        assert np.array_equal(theirs.value(node, s.cursor).numpy(), ref[f"value/{layer}"])
        assert np.array_equal(theirs.grad(node, s.cursor).numpy(), ref[f"grad/{layer}"])


@pytest.mark.parametrize("seed", [0, 1])
def test_numpys_pool_gradient_is_torchs_own_on_numpys_values(seed: int) -> None:
    s = _session(*_copies_model(seed))
    x = torch.from_numpy(np.asarray(s.trace.value("conv3d", s.cursor))).requires_grad_(True)
    F.max_pool3d(x, 3, 1, 1).backward(torch.from_numpy(np.asarray(s.trace.grad("max_pool3d_1", s.cursor))))
    numpys = np.asarray(s.trace.grad("conv3d", s.cursor))
    # a cell that wins several windows adds their gradients in another order: the last bit only
    np.testing.assert_allclose(x.grad.numpy(), numpys, rtol=0, atol=1e-15 * np.abs(numpys).max())
