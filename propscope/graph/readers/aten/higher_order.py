"""torch.export's higher-order ops that wrap a block of the forward in a context: `torch.no_grad()` (and
`torch.enable_grad()`) as `wrap_with_set_grad_enabled`, `torch.autocast` as `wrap_with_autocast` (EfficientViT's
attention turns autocast off to keep float32). Their bodies are read in place, as if the block had no context; what a
no-grad block makes is cut off from the gradient (`detach`), as torch's autograd never sees it."""

from __future__ import annotations

from typing import Any

from ...ir import Node
from .._aten import SCALAR_TYPES, Ctx, Subgraph, Translator, Unmapped, aten


def _body(a: dict[str, Any], at: int) -> tuple[Subgraph, list[Any]]:
    """The body (argument `at`) and the operands after it (the arguments are unnamed: keyed by position)."""
    body = a.get(str(at))
    if not isinstance(body, Subgraph):
        raise Unmapped("a higher-order op without its body graph")
    operands = [a[k] for k in sorted((k for k in a if k.isdigit() and int(k) > at), key=int)]
    return body, operands


@aten("higher_order.wrap_with_set_grad_enabled")
def _set_grad_enabled(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    enabled = a.get("0")
    if not isinstance(enabled, bool):
        raise Unmapped("torch.set_grad_enabled with a mode that is not a constant")
    body, operands = _body(a, 1)
    results = t.inline(body, operands)
    if enabled:
        return results
    return [t.b.op("detach", value, name=f"{ctx.name}.no_grad" if len(results) == 1 else f"{ctx.name}.no_grad{i}",
                   module=ctx.module) if isinstance(value, Node) else value for i, value in enumerate(results)]


@aten("higher_order.wrap_with_autocast")
def _autocast(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    body, operands = _body(a, 4)
    if a.get("2") is True:  # enabled: torch would compute its matrix products in the narrower dtype
        code = a.get("1")
        dtype = SCALAR_TYPES.get(code, "a narrower float") if isinstance(code, int) else "a narrower float"
        t.b.warnings.append(f"an autocast block at {ctx.module or ctx.name} computes in the session's dtype, where "
                            f"torch's autocast would compute its matrix products in {dtype}")
    return t.inline(body, operands)
