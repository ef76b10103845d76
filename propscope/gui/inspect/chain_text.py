"""The chain-rule dock's text: the catalog's formulas, then the same with the selected element's numbers.

Plain Python producing HTML (no Qt), so it is tested headless. Every number shown is read from the
step record or the trace (upstream, local derivative, contribution, running totals); nothing is
recomputed here. The one product written out, upstream × local = contribution, is the backend's
own contribution, shown beside its factors.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

import numpy as np

from ...debugger import BackwardStep, ForwardStep, Session
from ...debugger.steps import GradTerm
from ...graph.ir import Node
from ..format import Index, element, fit_index, fmt_index, fmt_num, fmt_shape

MATRIX_LIMIT = 16  # contributions up to this many elements are also written out in full
ROW_LIMIT = 8  # numbers to a written row: ten of them overflow the chain rule at 1024 px in projector mode

# How many tensors the text writes out in full, beside the formulas and the selected element's numbers (which it
# always shows). Projector mode steps down these levels until the text fits its share of the window: a room
# reads the formula with its numbers from the back row, and can find the whole tensor on the canvas.
FULL = "full"  # every tensor of the step
MAIN = "main"  # only the gradient the step is about (`main_term`: the parameter's, or the selected input's)
BRIEF = "brief"  # none
DETAILS = (FULL, MAIN, BRIEF)


def output_index(session: Session, node: Node, selected: str | None, index: Index | None) -> Index:
    """The element of `node` the dock talks about: the selected one where it applies, else the first."""
    if selected is not None and index is not None and selected in session.graph:
        sel = session.graph[selected]
        if sel is node or (sel in node.inputs and sel.shape == node.shape):
            return fit_index(index, node.shape)
    return fit_index(None, node.shape)


def input_index(node: Node, term_input: Node, out_index: Index, selected: str | None, index: Index | None) -> Index:
    if selected == term_input.name and index is not None:
        return fit_index(index, term_input.shape)
    if node.op.elementwise:
        return fit_index(out_index, term_input.shape)
    return fit_index(None, term_input.shape)


class Html:
    """Tiny helpers so the text reads like the formulas, coloured by the theme."""

    def __init__(self, colors: Mapping[str, str], scale: float = 1.0) -> None:
        self.c = colors
        self.scale = scale

    def span(self, text: str, color: str, bold: bool = False) -> str:
        weight = "font-weight:600;" if bold else ""
        return f'<span style="color:{self.c[color]};{weight}">{escape(text)}</span>'

    def num(self, value: float, color: str = "text", bold: bool = False) -> str:
        return self.span(fmt_num(value, 5), color, bold)

    def formula(self, text: str) -> str:
        return f'<p style="margin:2px 0 2px 12px; font-size:large;">{escape(text)}</p>'

    def big(self, html: str) -> str:
        return f'<p style="margin:6px 0 1px 12px; font-size:large;">{html}</p>'

    def line(self, html: str, indent: int = 12) -> str:
        return f'<p style="margin:2px 0 2px {indent}px;">{html}</p>'

    def heading(self, html: str) -> str:
        return f'<p style="margin:0 0 4px 0; font-size:large; font-weight:600;">{html}</p>'

    def sub(self, html: str) -> str:
        return f'<p style="margin:10px 0 2px 0; font-weight:600;">{html}</p>'

    def matrix(self, value: Any, mark: Index, color: str) -> str:
        a = np.asarray(value)
        if a.size > MATRIX_LIMIT or a.size <= 1:
            return ""
        m = a.reshape(1, -1) if a.ndim <= 1 else a.reshape(-1, a.shape[-1])
        if m.shape[1] == 1:  # a column is written across, as a row: 16 lines would push the formula off screen
            m = m.T
        if m.shape[0] == 1 and m.shape[1] > ROW_LIMIT:  # a long row continues on the next (flat order kept)
            cells = np.full(-(-m.size // ROW_LIMIT) * ROW_LIMIT, np.nan)
            cells[:m.size] = m.ravel()
            m = cells.reshape(-1, ROW_LIMIT)
        flat_mark = int(np.ravel_multi_index(mark, a.shape)) if a.ndim else 0
        rows = []
        for r in range(m.shape[0]):
            cells = []
            for c in range(m.shape[1]):
                is_mark = r * m.shape[1] + c == flat_mark
                style = f"padding:1px 8px; white-space:nowrap; color:{self.c[color if is_mark else 'text']};"
                style += "font-weight:600;" if is_mark else ""
                text = "" if r * m.shape[1] + c >= a.size else fmt_num(m[r, c])  # the padding after a long row
                cells.append(f'<td align="right" style="{style}">{escape(text)}</td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
        return f'<table style="margin-left:24px;" cellspacing="0">{"".join(rows)}</table>'


def main_term(record: BackwardStep, selected: str | None = None) -> GradTerm:
    """The gradient a backward step is about: the selected input's where one is selected, else a parameter's
    where it reaches one (∂L/∂W is what training uses), else its first input's."""
    chosen = next((t for t in record.terms if t.input.name == selected), None)
    if chosen is not None:
        return chosen
    return next((t for t in record.terms if t.input.op.name == "parameter"), record.terms[0])


def chain_rule_html(session: Session, selected: str | None, index: Index | None, colors: Mapping[str, str],
                    detail: str = FULL) -> str:
    """What the dock shows at the session's cursor; `detail` (FULL, MAIN, BRIEF) is how many tensors it writes
    out in full."""
    h = Html(colors)
    record = session.current
    total = len(session.steps)
    if record is None:
        no_loss = "" if session.loss_node is not None else (
            " There is no loss, so no backward pass: <b>Debug ▸ Loss</b> attaches one.")
        return (h.heading("Ready") + h.line(
            f"{total} steps: {session.n_forward} forward, then {total - session.n_forward} backward. "
            f"Press <b>Step</b> (F10, → or PageDown) to run the first op.{no_loss}", 0))
    where = f"{record.phase} {session.cursor}/{total} · {escape(record.node.op.name)} "
    head = h.heading(where + h.span(record.node.name, "forward" if record.phase == "forward" else "gradient"))
    if isinstance(record, ForwardStep):
        return head + _forward(session, record, selected, index, h, detail != BRIEF)
    assert isinstance(record, BackwardStep)
    return head + _backward(session, record, selected, index, h, detail)


def _forward(session: Session, record: ForwardStep, selected: str | None, index: Index | None, h: Html,
             matrix: bool = True) -> str:
    node = record.node
    op = node.op
    out = [h.formula(op.formula)]
    at = output_index(session, node, selected, index)
    backend = session.backend
    value = element(backend.to_numpy(record.output), at)
    where = h.span(f"  at {fmt_index(at)}", "muted") if at else ""
    if op.elementwise:
        parts = []
        for i, a in enumerate(node.inputs):
            v = element(backend.to_numpy(record.inputs[i]), fit_index(at, a.shape))
            parts.append(f"{escape(op.role(i))} = {h.num(v, 'forward')}")
        out.append(h.big(", ".join(parts) + f" &nbsp;→&nbsp; {escape(op.out)} = {h.num(value, 'text', bold=True)}"
                         + where))
    else:
        out.append(h.big(f"{escape(op.out)}{escape(fmt_index(at))} = {h.num(value, 'text', bold=True)}"))
        if matrix:
            out.append(h.matrix(backend.to_numpy(record.output), at, "forward"))
    # names, not math: ";" between them, because "·" beside a formula reads as a product
    roles = "; ".join(f"{op.role(i)} is {a.name} ({fmt_shape(a.shape)})" for i, a in enumerate(node.inputs))
    out.append(h.line(h.span(f"where {roles}; {op.out} is {node.name} ({fmt_shape(node.shape)})", "muted")))
    return "".join(out)


def _backward(session: Session, record: BackwardStep, selected: str | None, index: Index | None, h: Html,
              detail: str = FULL) -> str:
    node = record.node
    op = node.op
    upstream = session.backend.to_numpy(record.upstream)
    partials = record.partials()
    at = output_index(session, node, selected, index)
    out = []
    if not record.terms:
        out.append(h.line(h.span("no gradient flows to the inputs of this op", "muted")))
    main = main_term(record, selected) if record.terms and detail == MAIN else None
    for term in record.terms:
        local = None if partials is None else partials[term.position]
        matrix = detail == FULL or term is main
        out.append(_term(session, record, term, upstream, local, at, selected, index, h, matrix))
    source = "the loss itself: ∂L/∂L = 1" if node is session.loss_node else f"the ops that use {node.name}"
    out.append(h.line(h.span(f"{op.formula}; ∂L/∂{op.out} arrives from {source}", "muted"), 0))
    return "".join(out)


def _term(session: Session, record: BackwardStep, term: GradTerm, upstream: np.ndarray, local: Any, at: Index,
          selected: str | None, index: Index | None, h: Html, matrix: bool = True) -> str:
    node, backend = record.node, session.backend
    op = node.op
    role, name = term.role, term.input.name
    contribution = backend.to_numpy(term.contribution)
    out = []
    target = h.span(name, "gradient", bold=True) + " ← "
    elementwise = local is not None and contribution.shape == upstream.shape
    if elementwise:
        at_in = fit_index(at, term.input.shape)
        lv = element(np.asarray(local), at if np.asarray(local).shape == upstream.shape else at_in)
        where = h.span(f"  at {fmt_index(at_in)}", "muted") if at_in else ""
        out.append(h.big(target + f"∂L/∂{escape(role)} = ∂L/∂{escape(op.out)} × ∂{escape(op.out)}/∂{escape(role)} = "
                         + h.num(element(upstream, at), "gradient") + " × " + h.num(lv, "forward") + " = "
                         + h.num(element(contribution, at_in), "text", bold=True) + where))
        out.append(h.line(h.span(f"where {role} is {name}; {term.formula}", "muted")))
    else:
        at_in = input_index(node, term.input, at, selected, index)
        out.append(h.big(target + escape(term.formula) + ", &nbsp;"
                         + f"∂L/∂{escape(role)}{escape(fmt_index(at_in))} = "
                         + h.num(element(contribution, at_in), "text", bold=True)))
        if matrix:
            out.append(h.matrix(contribution, at_in, "gradient"))
    out.append(_running_sum(session, term, at_in, h))
    return "".join(out)


def _running_sum(session: Session, term: GradTerm, at: Index, h: Html) -> str:
    backend = session.backend
    name = term.input.name
    total = element(backend.to_numpy(term.total), at)
    if term.consumers <= 1:
        return h.line(h.span(f"{name} feeds one op, so this is its whole gradient", "muted"))
    if term.total_before is None:
        return h.line(h.span(f"contribution {term.arrival} of {term.consumers}: ", "gradient", bold=True)
                      + f"∂L/∂{escape(name)} so far = " + h.num(total, "gradient", bold=True)
                      + h.span(f"  ({term.consumers - term.arrival} more to come)", "muted"))
    before = element(backend.to_numpy(term.total_before), at)
    contribution = element(backend.to_numpy(term.contribution), at)
    done = "complete" if term.arrival == term.consumers else f"{term.consumers - term.arrival} more to come"
    return h.line(h.span(f"contribution {term.arrival} of {term.consumers}: ", "gradient", bold=True)
                  + f"∂L/∂{escape(name)} = " + h.num(before) + " + " + h.num(contribution) + " = "
                  + h.num(total, "gradient", bold=True) + h.span(f"  ({done})", "muted"))
