"""The current step's chain rule as LaTeX, for slides written in Beamer or a paper.

Plain Python, no Qt. The numbers are the step record's own (upstream, local derivative, contribution)
at one element, as the chain-rule dock shows them; the catalog's display formula comes along as text.
"""

from __future__ import annotations

import numpy as np

from ...debugger import BackwardStep, ForwardStep, Session
from ..format import Index, element, fit_index
from ..inspect.chain_text import input_index, output_index


def _name(text: str) -> str:
    """A node name as upright LaTeX text (underscores and dots escaped)."""
    return r"\mathrm{" + text.replace("\\", r"\backslash ").replace("_", r"\_").replace("&", r"\&") + "}"


# the catalog's formulas' symbols as LaTeX, so the output is plain ASCII: pdflatex stops at a "∂" or "Σ" in \text{}
SYMBOLS = {
    "∂": r"\partial", "Σ": r"\Sigma", "Π": r"\Pi", "Φ": r"\Phi", "α": r"\alpha", "β": r"\beta", "γ": r"\gamma",
    "δ": r"\delta", "ε": r"\varepsilon", "κ": r"\kappa", "λ": r"\lambda", "μ": r"\mu", "π": r"\pi",
    "σ": r"\sigma", "φ": r"\varphi", "ℓ": r"\ell", "·": r"\cdot", "×": r"\times", "±": r"\pm", "−": "-",
    "√": r"\surd", "∞": r"\infty", "∈": r"\in", "≠": r"\neq", "≤": r"\leq", "≥": r"\geq", "→": r"\to",
    "¬": r"\neg", "∧": r"\wedge", "∨": r"\vee", "∫": r"\int", "⊕": r"\oplus", "⊙": r"\odot", "⋚": r"\lesseqgtr",
    "⌈": r"\lceil", "⌉": r"\rceil", "⌊": r"\lfloor", "⌋": r"\rfloor", "‖": r"\|", "…": r"\ldots", "½": r"\tfrac{1}{2}",
    "²": "^{2}", "³": "^{3}", "ᵀ": r"^{\mathsf{T}}", "ᵃ": "^{a}", "⁻": "^{-}", "₀": "_{0}", "₁": "_{1}", "ₙ": "_{n}",
    "ŷ": r"\hat{y}", "ĉ": r"\hat{c}", "\u0304": "",  # a combining macron (x̄): the letter stays
}


def _text(text: str) -> str:
    plain = text.replace("\\", r"\textbackslash ").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%") \
        .replace("#", r"\#").replace("{", r"\{").replace("}", r"\}").replace("^", r"\^{}").replace("~", r"\~{}")
    out = "".join(c if ord(c) < 128 else rf"\ensuremath{{{SYMBOLS[c]}}}" if c in SYMBOLS else f"[U+{ord(c):04X}]"
                  for c in plain)  # a letter of no table (a module's non-Latin name): still ASCII, and still there
    return r"\text{" + out + "}"


def _num(x: float) -> str:
    if not np.isfinite(x):  # "= nan" would read as the product n·a·n
        return r"\text{NaN}" if np.isnan(x) else r"\infty" if x > 0 else r"-\infty"
    return f"{x:.6g}".replace("e", r"\times 10^{") + ("}" if "e" in f"{x:.6g}" else "")


def _at(index: Index) -> str:
    return f"_{{[{', '.join(map(str, index))}]}}" if index else ""


def formula_latex(session: Session, selected: str | None = None, index: Index | None = None) -> str:
    """An `align*` environment for the step just taken (a comment before the first step)."""
    record = session.current
    if record is None:
        return f"% {session.name}: before the first step; nothing computed yet\n"
    node, backend = record.node, session.backend
    at = output_index(session, node, selected, index)
    lines = [f"% {session.name}: {record.phase} step {session.cursor}/{len(session.steps)}, "
             f"{node.op.name} {node.name}", r"\begin{align*}"]
    if isinstance(record, ForwardStep):
        value = element(backend.to_numpy(record.output), at)
        lines.append(f"  {_name(node.name)}{_at(at)} &= {_text(node.op.formula)} = {_num(value)}")
    else:
        assert isinstance(record, BackwardStep)
        lines += _backward_lines(session, record, at, selected, index)
    lines.append(r"\end{align*}")
    return "\n".join(lines) + "\n"


def _backward_lines(session: Session, record: BackwardStep, at: Index, selected: str | None,
                    index: Index | None) -> list[str]:
    node, backend = record.node, session.backend
    upstream = backend.to_numpy(record.upstream)
    partials = record.partials()
    out = []
    d_node = rf"\frac{{\partial L}}{{\partial {_name(node.name)}}}"
    for term in record.terms:
        contribution = backend.to_numpy(term.contribution)
        d_in = rf"\frac{{\partial L}}{{\partial {_name(term.input.name)}}}"
        local = None if partials is None else partials[term.position]
        if local is not None and contribution.shape == upstream.shape:
            at_in = fit_index(at, term.input.shape)
            lv = element(np.asarray(backend.to_numpy(local)), at)
            local_sym = rf"\frac{{\partial {_name(node.name)}}}{{\partial {_name(term.input.name)}}}"
            out.append(f"  {d_in}{_at(at_in)} &= {d_node} \\cdot {local_sym} = {_num(element(upstream, at))} "
                       f"\\cdot {_num(lv)} = {_num(element(contribution, at_in))} \\\\")
        else:
            at_in = input_index(node, term.input, at, selected, index)
            out.append(f"  {d_in}{_at(at_in)} &= {_num(element(contribution, at_in))} "
                       f"&& {_text(term.formula)} \\\\")
        if term.consumers > 1:
            total = element(backend.to_numpy(term.total), at_in)
            out.append(f"  &\\quad {_text(f'contribution {term.arrival} of {term.consumers}, sum so far')} "
                       f"= {_num(total)} \\\\")
    if out:
        out[-1] = out[-1].removesuffix(" \\\\")
    else:
        out.append(f"  {_text('no gradient flows to the inputs of ' + node.name)}")
    return out
