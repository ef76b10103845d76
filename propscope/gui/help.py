"""The Help menu: the keys (read from the window's own actions, so the list cannot drift from them), a
short "first steps" page for someone who has never opened the app, and About.

The pages are non-modal dialogs: the window keeps stepping while they are open (a teacher can leave
the keys on a second screen).
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMainWindow, QMenu, QTextBrowser, QVBoxLayout, QWidget

from .menus import menu_bar_menus, submenus

# Keys that are not a menu action's: what the mouse and the canvas do.
MOUSE = [
    ("Select a node", "click it; click a number in the inspector to select that element"),
    ("Node menu (breakpoint, run to here, explain)", "right-click a node"),
    ("Open or fold a module box", "double-click the box, or its frame to fold it again"),
    ("Pan, zoom", "drag the background, mouse wheel"),
    ("Open a model file", "drop it on the window"),
]

FIRST_STEPS = """
<h2>First steps</h2>
<ol>
<li><b>Step.</b> Press <b>F10</b> (or → or PageDown). The highlighted node has just run: the
canvas shows its value, the <i>Chain rule</i> panel its formula with the numbers filled in.</li>
<li><b>Keep stepping</b> through the forward pass to the loss. Then the backward pass begins: each step takes
the gradient that arrived at a node (<i>upstream</i>), multiplies it by the node's local derivative, and passes
the product to the node's inputs. The <i>Chain rule</i> panel writes that product out.</li>
<li><b>Step back</b> with Shift+F10 (or ← or PageUp) whenever something went by too fast: stepping back is
exact.</li>
<li><b>Click a node</b> to see all its numbers in the <i>Inspector</i>; click one number to follow that element
through the formulas.</li>
<li><b>Explain this gradient</b> (in the <i>Chain rule</i> panel) lists every path from the loss to one number
and shows that their products add up to its gradient.</li>
<li><b>Train.</b> In the <i>Training</i> panel press <i>Play</i> and watch the loss fall and the decision
boundary move; <i>Pause</i>, then step through the network as it is now.</li>
<li><b>Other lessons</b> are in the toolbar's <i>Example</i> list (the perceptron, a CNN, an LSTM, attention);
File ▸ Open reads your own model (.pt2, .onnx, .propscope).</li>
</ol>
<p>Teaching? <b>F11</b> switches projector mode: big type and high contrast, the current step kept in view.</p>
"""


def shortcut_rows(window: QWidget) -> list[tuple[str, str]]:
    """(what, keys) for every action of the window that has a key, in menu order, each action once."""
    rows: list[tuple[str, str]] = []
    seen: set[int] = set()
    for action in _actions(window):
        if id(action) in seen or not action.shortcuts():
            continue
        seen.add(id(action))
        keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())
        rows.append((action.text().replace("&", "").rstrip("…"), keys))
    return rows


def _actions(window: QWidget) -> list[QAction]:
    """Menu actions first (in the order the menus show them), then the window's other actions."""
    ordered: list[QAction] = []
    if isinstance(window, QMainWindow):
        opens = submenus(window)
        for menu in menu_bar_menus(window):
            ordered += _menu_actions(menu, opens)
    return ordered + window.findChildren(QAction)


def _menu_actions(menu: QMenu, opens: dict[QAction, QMenu]) -> list[QAction]:
    out: list[QAction] = []
    for action in menu.actions():
        sub = opens.get(action)
        out += _menu_actions(sub, opens) if sub is not None else [action]
    return out


def keys_html(window: QWidget) -> str:
    cell = 'style="padding:2px 14px 2px 0;"'
    rows = "".join(f"<tr><td {cell}>{escape(what)}</td><td {cell}><b>{escape(keys)}</b></td></tr>"
                   for what, keys in shortcut_rows(window))
    mouse = "".join(f"<tr><td {cell}>{escape(what)}</td><td {cell}>{escape(how)}</td></tr>" for what, how in MOUSE)
    return (f"<h2>Keys</h2><table>{rows}</table><h3>Mouse</h3><table>{mouse}</table>"
            "<p>A presenter remote sends PageDown and PageUp: it steps.</p>")


def about_html() -> str:
    import PySide6

    from .. import __version__

    return (f"<h2>propscope {escape(__version__)}</h2>"
            "<p>A debugger for neural networks: step through the forward and the backward pass one operation at "
            "a time, with the chain rule written out in real numbers.</p>"
            "<p>The NumPy backend's derivatives are written by hand; the PyTorch backend's come from autograd, "
            "and the two are checked against each other.</p>"
            f"<p>MIT licence. Qt for Python (PySide6) {escape(PySide6.__version__)}.</p>")


class HelpPage(QDialog):
    def __init__(self, title: str, html: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName(f"help:{title}")
        self.text = QTextBrowser()
        self.text.setOpenExternalLinks(True)
        self.text.setHtml(html)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text, 1)
        lay.addWidget(buttons)
        self.resize(self.fontMetrics().averageCharWidth() * 80, self.fontMetrics().height() * 30)


def add_help_menu(window: QMainWindow) -> QMenu:
    """Help ▸ Keys (F1), First steps, About propscope; the open page is `window.help_page`."""
    menu = window.menuBar().addMenu("&Help")

    def show(title: str, html: object) -> None:
        page = HelpPage(title, html() if callable(html) else str(html), window)
        page.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.help_page = page  # type: ignore[attr-defined]
        page.show()

    for text, title, key, html in (
        ("&Keys", "Keys", "F1", lambda: keys_html(window)),
        ("&First steps", "First steps", None, FIRST_STEPS),
        ("&About propscope", "About propscope", None, about_html),
    ):
        action = QAction(text, window)
        action.setObjectName(f"help_{title.split()[0].lower()}")
        if key:
            action.setShortcut(QKeySequence(key))
        action.triggered.connect(lambda _checked=False, t=title, h=html: show(t, h))
        menu.addAction(action)
        window.addAction(action)
    return menu
