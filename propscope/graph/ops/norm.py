"""Normalisation layers: batch, layer, group (and instance) and RMS norm.

Each one standardises x over some axes (xₙ = (x − μ)/√(σ² + ε), or x/RMS) and then scales and
shifts it with learned γ and β. They differ only in which axes the statistics are taken over.
Running statistics are data, not trainable values: those roles are non-differentiable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]

# ∂L/∂x through xₙ = (x − μ)/σ where μ and σ depend on x too: shared by batch, layer and group norm
_STANDARDISE_BACK = "(1/√(σ² + ε)) · (∂L/∂xₙ − mean(∂L/∂xₙ) − xₙ · mean(∂L/∂xₙ · xₙ)),  ∂L/∂xₙ = γ · ∂L/∂y"


def _batch_norm(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    if len(x) < 2:
        raise ShapeError(f"batch_norm takes (batch, channels, ...), got {S.fmt(x)}")
    for role, shape in zip(("γ", "β", "μ_run", "σ²_run"), shapes[1:], strict=True):
        if tuple(shape) != (x[1],):
            raise ShapeError(f"{role} must be ({x[1]},), one per channel, got {S.fmt(shape)}")
    return x


define(OpDef(
    "batch_norm", ("x", "γ", "β", "μ_run", "σ²_run"),
    "y = γ · xₙ + β,  xₙ = (x − μ) / √(σ² + ε);  μ, σ² per channel: of this batch when training, "
    "else the running ones",
    {
        "x": f"training: ∂L/∂x = {_STANDARDISE_BACK};"
             "  eval: ∂L/∂x = γ · ∂L/∂y / √(σ²_run + ε)",
        "γ": "∂L/∂γ = Σ_(batch, positions) ∂L/∂y · xₙ",
        "β": "∂L/∂β = Σ_(batch, positions) ∂L/∂y",
    },
    _batch_norm, "BN", out="y", category="norm", nondifferentiable=frozenset({"μ_run", "σ²_run"}),
    default_attrs={"training": True, "momentum": 0.1, "eps": 1e-5},
    summary="batch normalisation over axis 1 (channels); the running statistics are constant inputs",
    derivatives_by=("training", {True: {"x": f"∂L/∂x = {_STANDARDISE_BACK}"},
                                 False: {"x": "∂L/∂x = γ · ∂L/∂y / √(σ²_run + ε)"}}),
))


def normalized_shape(x: Shape, attrs: Mapping[str, Any], weight: Shape) -> Shape:
    """The trailing axes layer_norm averages over: the attr, or the weight's shape when the attr is None."""
    norm = attrs.get("normalized_shape")
    return tuple(weight) if norm is None else ((int(norm),) if isinstance(norm, int) else tuple(int(d) for d in norm))


def _trailing(name: str, x: Shape, norm: Shape) -> None:
    if not norm or len(norm) > len(x) or x[len(x) - len(norm):] != norm:
        raise ShapeError(f"{name}: normalized_shape {S.fmt(norm)} must be the last axes of x {S.fmt(x)}")


def _layer_norm(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w, b = (tuple(s) for s in shapes)
    norm = normalized_shape(x, attrs, w)
    _trailing("layer_norm", x, norm)
    if w != norm or b != norm:
        raise ShapeError(f"γ {S.fmt(w)} and β {S.fmt(b)} must both have the normalized shape {S.fmt(norm)}")
    return x


define(OpDef(
    "layer_norm", ("x", "γ", "β"),
    "y = γ · xₙ + β,  xₙ = (x − μ) / √(σ² + ε);  μ, σ² over the last axes of each sample",
    {
        "x": f"∂L/∂x = {_STANDARDISE_BACK}",
        "γ": "∂L/∂γ = Σ_samples ∂L/∂y · xₙ",
        "β": "∂L/∂β = Σ_samples ∂L/∂y",
    },
    _layer_norm, "LN", out="y", category="norm", default_attrs={"normalized_shape": None, "eps": 1e-5},
    summary="layer normalisation over the trailing normalized_shape axes of every sample",
))


def _group_norm(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w, b = (tuple(s) for s in shapes)
    if len(x) < 2:
        raise ShapeError(f"group_norm takes (batch, channels, ...), got {S.fmt(x)}")
    groups = attrs.get("num_groups")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ShapeError(f"group_norm needs num_groups, a positive integer, got {groups!r}")
    if x[1] % groups:
        raise ShapeError(f"{x[1]} channels of x {S.fmt(x)} do not split into {groups} groups")
    if w != (x[1],) or b != (x[1],):
        raise ShapeError(f"γ {S.fmt(w)} and β {S.fmt(b)} must both be ({x[1]},), one per channel")
    return x


define(OpDef(
    "group_norm", ("x", "γ", "β"),
    "y = γ_c · xₙ + β_c,  xₙ = (x − μ) / √(σ² + ε);  μ, σ² over each sample's group of C/G channels "
    "and all their positions",
    {
        "x": f"∂L/∂x = {_STANDARDISE_BACK}  (means over the group)",
        "γ": "∂L/∂γ_c = Σ_(batch, positions) ∂L/∂y · xₙ  (channel c)",
        "β": "∂L/∂β_c = Σ_(batch, positions) ∂L/∂y  (channel c)",
    },
    _group_norm, "GN", out="y", category="norm", default_attrs={"num_groups": 1, "eps": 1e-5},
    summary="group normalisation: the C channels split into G = num_groups groups, each sample's group "
            "standardised on its own (G = C is instance norm, G = 1 normalises each whole sample)",
))


def _rms_norm(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w = (tuple(s) for s in shapes)
    norm = normalized_shape(x, attrs, w)
    _trailing("rms_norm", x, norm)
    if w != norm:
        raise ShapeError(f"γ {S.fmt(w)} must have the normalized shape {S.fmt(norm)}")
    eps = attrs.get("eps")
    if eps is not None and not isinstance(eps, int | float):
        raise ShapeError(f"rms_norm's eps must be a number or None, got {eps!r}")
    return x


define(OpDef(
    "rms_norm", ("x", "γ"),
    "y = γ · xₙ,  xₙ = x / √(mean(x²) + ε);  the mean over the last axes of each sample",
    {
        "x": "∂L/∂x = (1/√(mean(x²) + ε)) · (∂L/∂xₙ − xₙ · mean(∂L/∂xₙ · xₙ)),  ∂L/∂xₙ = γ · ∂L/∂y",
        "γ": "∂L/∂γ = Σ_samples ∂L/∂y · xₙ",
    },
    _rms_norm, "RMS", out="y", category="norm", default_attrs={"normalized_shape": None, "eps": None},
    summary="root-mean-square normalisation over the trailing normalized_shape axes (no centring, no β); "
            "ε = None means the machine epsilon of the dtype, as torch",
))
