"""ATen activations: one catalog op each, folded when the input is a constant."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._aten import Ctx, Missing, Translator, Unmapped, aten, op_key, self_arg

_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda a: np.maximum(a, 0.0), "tanh": np.tanh, "exp": np.exp, "log": np.log, "neg": np.negative,
}


@aten("relu", "sigmoid", "tanh", "exp", "log", "neg", "silu", "gelu", "leaky_relu")
def _unary(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x = self_arg(a)
    attrs: dict[str, Any] = {}
    if op == "gelu":
        attrs["approximate"] = a.get("approximate", "none")
    elif op == "leaky_relu":
        attrs["negative_slope"] = float(a.get("negative_slope", 0.01))
    if t.const(x) and op in _UNARY:
        return _UNARY[op](np.asarray(x, dtype=np.float64))
    return t.b.op(op, t.node(x, ctx), name=ctx.name, module=ctx.module, attrs=attrs)


@aten("softmax", "_softmax", "log_softmax", "_log_softmax")
def _softmax(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target).lstrip("_")
    return t.b.op(op, t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module, attrs={"axis": int(a["dim"])})


def _act(t: Translator, a: dict[str, Any], ctx: Ctx, op: str, **attrs: Any) -> Any:
    return t.b.op(op, t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module, attrs=attrs,
                  original_op=op_key(ctx.target))


def _scalar(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(()))
    raise Unmapped(f"a tensor {what} bound (clamp by a computed tensor)")


def _is_scalar(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) or (
        isinstance(value, np.ndarray) and value.size == 1)


def _clamp_by_tensors(t: Translator, x: Any, low: Any, high: Any, ctx: Ctx) -> Any:
    """clamp with tensor bounds (PhiMoE's sparse mixer clamps its scores by a threshold per token): where(x < low,
    low, x), then where(x > high, high, x). The gradient goes where torch's does: to the bound where it was taken,
    else to x, a tie included (torch's clamp is inclusive)."""
    out: Any = x
    for bound, side in ((low, "lt"), (high, "gt")):
        if bound is None:
            continue
        kx, kb = t.known(out), t.known(bound)
        if kx is not None and kb is not None:
            out = np.maximum(kx, kb) if side == "lt" else np.minimum(kx, kb)
            continue
        current, limit = t.node(out, ctx, "self"), t.node(bound, ctx, "min" if side == "lt" else "max")
        past = t.b.op("compare", current, limit, name=f"{ctx.name}.{side}", module=ctx.module, attrs={"op": side})
        out = t.b.op("where", past, limit, current, name=ctx.name if high is None or side == "gt" else
                     f"{ctx.name}.low", module=ctx.module, original_op=op_key(ctx.target))
    return out


@aten("logit", "special_logit")
def _logit(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """The inverse sigmoid, log(z / (1 − z)) with z = x clamped to [eps, 1 − eps] where eps is given (Grounding
    DINO's reference points turned back into logits): a clamp, two logarithms and their difference, with torch's
    gradient, 1 / (x(1 − x)) inside the bounds and 0 past them."""
    x, eps = self_arg(a), _scalar(a.get("eps"), "eps")
    known = t.known(x)
    if known is not None:
        z = np.asarray(known, dtype=np.float64) if eps is None else np.clip(known, eps, 1.0 - eps)
        return np.log(z / (1.0 - z))
    z = t.node(x, ctx)
    if eps is not None:
        z = t.b.op("clamp", z, name=f"{ctx.name}.clamp", module=ctx.module,
                   attrs={"min": eps, "max": 1.0 - eps, "inclusive": True})
    rest = t.b.op("sub", t.b.const(np.array(1.0), ctx.module, "one"), z, name=f"{ctx.name}.rest", module=ctx.module)
    logs = [t.b.op("log", v, name=f"{ctx.name}.{role}", module=ctx.module)
            for v, role in ((z, "log"), (rest, "log_rest"))]
    return t.b.op("sub", *logs, name=ctx.name, module=ctx.module, original_op=op_key(ctx.target))


@aten("hardtanh", "relu6", "clamp", "clip", "clamp_min", "clamp_max")
def _clamp(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    low: float | None
    high: float | None
    if op == "hardtanh":
        low, high = float(a.get("min_val", -1.0)), float(a.get("max_val", 1.0))
    elif op == "relu6":
        low, high = 0.0, 6.0
    else:
        bounds = (a.get("min") if op != "clamp_max" else None, a.get("max") if op != "clamp_min" else None)
        if any(b is not None and not _is_scalar(b) for b in bounds):
            return _clamp_by_tensors(t, self_arg(a), *bounds, ctx)
        low, high = _scalar(bounds[0], "lower"), _scalar(bounds[1], "upper")
    x = self_arg(a)
    if t.const(x):
        return np.clip(np.asarray(x, dtype=np.float64), low, high)
    # torch.clamp passes the gradient at a bound; hardtanh and ReLU6 do not
    return _act(t, a, ctx, "clamp", min=low, max=high, inclusive=op not in ("hardtanh", "relu6"))


@aten("hardswish", "hardsigmoid", "mish", "erf", "selu", "log_sigmoid")
def _plain(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return _act(t, a, ctx, op_key(ctx.target))


@aten("log_sigmoid_forward")
def _log_sigmoid_forward(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return [_act(t, a, ctx, "log_sigmoid"), Missing("log-sigmoid's buffer")]


@aten("elu")
def _elu(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return _act(t, a, ctx, "elu", alpha=float(a.get("alpha", 1.0)), scale=float(a.get("scale", 1.0)),
                input_scale=float(a.get("input_scale", 1.0)))


@aten("celu")
def _celu(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return _act(t, a, ctx, "celu", alpha=float(a.get("alpha", 1.0)))


@aten("softshrink", "hardshrink")
def _shrink(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    lambd = float(a.get("lambd", 0.5))
    return _act(t, a, ctx, "shrink", lambd=lambd, bias=lambd if op_key(ctx.target) == "softshrink" else 0.0)


@aten("softplus")
def _softplus(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return _act(t, a, ctx, "softplus", beta=float(a.get("beta", 1.0)), threshold=float(a.get("threshold", 20.0)))


@aten("prelu", "_prelu_kernel")
def _prelu(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """PReLU, z if z > 0 else w · z, as torch computes it: where(z > 0, z, w · z). The slope gets the gradient
    z · ∂L/∂out where z ≤ 0 and z the gradient w · ∂L/∂out there (w at z = 0, as torch's prelu backward).
    aten.prelu's w holds one slope per channel, the channels being axis 1; _prelu_kernel's w already broadcasts."""
    x = t.node(self_arg(a), ctx)
    slope = t.node(a["weight"], ctx, "weight")
    if op_key(ctx.target) == "prelu" and len(x.shape) >= 2 and math.prod(slope.shape) > 1:
        slope = t.b.op("reshape", slope, name=f"{ctx.name}.per_channel", module=ctx.module,
                       attrs={"shape": (-1, *(1,) * (len(x.shape) - 2))})
    positive = t.b.op("compare", x, t.b.const(np.array(0.0), ctx.module, "zero"), name=f"{ctx.name}.positive",
                      module=ctx.module, attrs={"op": "gt"})
    scaled = t.b.op("mul", slope, x, name=f"{ctx.name}.scaled", module=ctx.module)
    return t.b.op("where", positive, x, scaled, name=ctx.name, module=ctx.module, original_op=op_key(ctx.target))


@aten("threshold")
def _threshold(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """nn.Threshold: z if z > threshold else value; the gradient passes where z > threshold (torch's
    threshold_backward), the value is a constant."""
    threshold, value = _scalar(a["threshold"], "threshold"), _scalar(a["value"], "replacement")
    if threshold is None or value is None:
        raise Unmapped("a threshold without its bound or replacement value")
    x = self_arg(a)
    if t.const(x):
        z = np.asarray(x, dtype=np.float64)
        return np.where(z > threshold, z, value)
    node = t.node(x, ctx)
    above = t.b.op("compare", node, t.b.const(np.array(threshold), ctx.module, "threshold"),
                   name=f"{ctx.name}.above", module=ctx.module, attrs={"op": "gt"})
    return t.b.op("where", above, node, t.b.const(np.array(value), ctx.module, "value"), name=ctx.name,
                  module=ctx.module, original_op="threshold")


@aten("rrelu", "rrelu_with_noise", "rrelu_with_noise_functional")
def _rrelu(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Randomized leaky ReLU. In eval mode a leaky ReLU with the mean slope (lower + upper) / 2, as torch computes
    it; in training mode each pass draws a slope per element at random, which no replay can match."""
    if a.get("training", False):
        raise Unmapped(f"{op_key(ctx.target)} in training mode (a random slope per element on every pass; "
                       "put the model in eval mode to read it as a leaky ReLU)")
    lower, upper = float(a.get("lower", 1.0 / 8.0)), float(a.get("upper", 1.0 / 3.0))
    return _act(t, a, ctx, "leaky_relu", negative_slope=(lower + upper) / 2.0)
