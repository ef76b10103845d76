"""The "Explain this gradient" dialog: every path from one element to the loss, and their sum.

It renders what `Session.explain` returns; the paths and products are the debugger's, not ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from ..format import fmt_index, fmt_num


def explanation_html(ex: Any, colors: Mapping[str, str]) -> str:
    def elem(name: str, index: tuple[int, ...]) -> str:
        return escape(name + fmt_index(tuple(index)))

    target = elem(ex.name, ex.index)
    rows = [f'<p style="font-size:large; font-weight:600;">∂L/∂{target}: {ex.total_paths} path(s) to the loss</p>',
            "<p>By the chain rule, the gradient of one element is the sum, over every path from it to the loss, "
            "of the product of the local derivatives along the path.</p>",
            '<table cellspacing="0" cellpadding="4">']
    for k, path in enumerate(ex.paths, 1):
        hops = [target] + [elem(f.consumer, f.element) for f in path.factors]
        factors = " × ".join(escape(fmt_num(f.value, 5)) for f in path.factors)
        rows.append(f'<tr><td valign="top"><b>{k}</b></td><td>{" → ".join(hops)}<br>'
                    f'<span style="color:{colors["muted"]};">{factors} =</span> '
                    f'<b>{escape(fmt_num(path.product, 6))}</b></td></tr>')
    rows.append("</table>")
    if ex.omitted:
        rows.append(f"<p>… and {ex.omitted} more path(s), summing to {escape(fmt_num(ex.omitted_sum, 6))}.</p>")
    agree = ex.agrees()
    color = colors["forward"] if agree else colors["breakpoint"]
    verdict = "equals" if agree else "DIFFERS FROM"
    rows.append(f'<p style="font-size:large;">sum of paths = <b>{escape(fmt_num(ex.path_sum, 8))}</b> '
                f'<span style="color:{color}; font-weight:600;">{verdict}</span> the gradient the backend '
                f'computed, <b>{escape(fmt_num(ex.computed, 8))}</b></p>')
    for note in getattr(ex, "notes", []):
        rows.append(f"<p><i>{escape(note)}</i></p>")
    return "".join(rows)


class ExplainDialog(QDialog):
    def __init__(self, explanation: Any, colors: Mapping[str, str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("explainDialog")
        self.setWindowTitle(f"Explain ∂L/∂{explanation.name}{fmt_index(tuple(explanation.index))}")
        self.text = QTextBrowser()
        self.text.setHtml(explanation_html(explanation, colors))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        lay.addWidget(buttons)
        self.resize(760, 520)
