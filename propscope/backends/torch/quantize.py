"""Quantization in torch: torch's own fake-quant kernels (`torch.fake_quantize_per_tensor_affine`,
`_per_channel_affine`, and their autograd: the straight-through estimator) wherever their rounding is the node's;
elsewhere (ONNX's x/s) the same grid in torch ops, with the straight-through gradient written as autograd sees it:
`y.detach() + (x − x.detach()) · mask` is y, and its gradient is upstream × mask.
"""

from __future__ import annotations

import torch

from .kernels import Tensor, kernel


def _steps(x: Tensor, scale: Tensor, inverse: bool) -> Tensor:
    if inverse:  # torch's kernels: inv_scale = 1.0f / scale, in float32
        return x * (1 / scale.to(torch.float32)).to(x.dtype)
    return x / scale


def _levels(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int,
            inverse: bool) -> tuple[Tensor, Tensor]:
    raw = torch.round(_steps(x, scale, inverse)) + zero_point.to(x.dtype)  # torch.round: halves to even
    return raw, torch.clamp(raw, qmin, qmax)


def _read_back(q: Tensor, scale: Tensor, zero_point: Tensor, float32_output: bool) -> Tensor:
    dtype = scale.dtype if scale.is_floating_point() else q.dtype
    exact = (q - zero_point.to(q.dtype)) * scale
    if not float32_output:
        return exact
    rounded = ((q - zero_point.to(q.dtype)).to(torch.float32) * scale.to(torch.float32)).to(dtype)
    return exact + (rounded - exact).detach()  # the float32 value, the exact product's gradient


def _straight_through(value: Tensor, x: Tensor, slope: Tensor) -> Tensor:
    """`value`, with the gradient upstream × slope with respect to x (round taken as the identity)."""
    return value.detach() + (x - x.detach()) * slope


def _channel_axis(scale: Tensor, x: Tensor) -> int | None:
    """The one axis a per-channel scale (shaped to broadcast against x) varies along; None if not one."""
    shape = (1,) * (x.dim() - scale.dim()) + tuple(scale.shape)
    axes = [i for i, d in enumerate(shape) if d != 1]
    return axes[0] if len(axes) == 1 and shape[axes[0]] == x.shape[axes[0]] else None


def _native(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor | None:
    """torch's own kernel for this grid, where it computes what the node asks: per tensor (its output rounded
    to float32) or per channel (kept in x's dtype), integer zero points."""
    if zero_point.is_floating_point() or x.dtype not in (torch.float32, torch.float64):
        return None
    if scale.numel() == 1 and zero_point.numel() == 1:
        return torch.fake_quantize_per_tensor_affine(x, scale.reshape(1).to(torch.float32),
                                                     zero_point.reshape(1).to(torch.int32), qmin, qmax)
    axis = _channel_axis(scale, x)
    if axis is None or zero_point.numel() not in (1, x.shape[axis]):
        return None
    zp = zero_point.reshape(-1).to(torch.int32).expand(x.shape[axis]).contiguous()
    return torch.fake_quantize_per_channel_affine(x, scale.reshape(-1).to(torch.float32), zp, axis, qmin, qmax)


@kernel("fake_quantize")
def fake_quantize(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int, inverse: bool,
                  float32_output: bool) -> Tensor:
    # torch's per-tensor kernel rounds its output to float32, its per-channel kernel does not
    if inverse and float32_output == (scale.numel() == 1):
        out = _native(x, scale, zero_point, qmin, qmax)
        if out is not None:
            return out
    raw, q = _levels(x, scale, zero_point, qmin, qmax, inverse)
    y = _read_back(q, scale, zero_point, float32_output).to(x.dtype)
    return _straight_through(y, x, ((raw >= qmin) & (raw <= qmax)).to(x.dtype))


@kernel("quantize")
def quantize(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int, inverse: bool,
             float32_output: bool) -> Tensor:
    raw, q = _levels(x, scale, zero_point, qmin, qmax, inverse)
    return _straight_through(q, x, ((raw >= qmin) & (raw <= qmax)).to(x.dtype) / scale)


@kernel("dequantize")
def dequantize(q: Tensor, scale: Tensor, zero_point: Tensor, float32_output: bool) -> Tensor:
    return _read_back(q, scale, zero_point, float32_output)


@kernel("choose_qparams")
def choose_qparams(x: Tensor, part: str, qmin: int, qmax: int) -> Tensor:
    x = x.detach()  # the grid is data: no gradient flows into its choice
    zero_ = torch.zeros((), dtype=x.dtype, device=x.device)
    hi = torch.maximum(zero_, x.max()) if x.numel() else zero_
    lo = torch.minimum(zero_, x.min()) if x.numel() else zero_
    scale = torch.where(hi == lo, torch.ones_like(hi), (hi - lo) / (qmax - qmin))
    if part == "scale":
        return scale
    return torch.round(torch.clamp(qmin - lo / scale, qmin, qmax))
