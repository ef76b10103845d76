"""The shape of a scripted TorchScript archive's inputs, asked before it opens: such an archive records none (a traced
one keeps its example inputs' shapes), and its graph is read at the shapes given (`MainWindow.open_path`'s
`input_shapes`, read by the loading job off the GUI thread).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from ..graph.errors import ModelFormatError
from ..graph.readers import torchscript
from .guard import guarded

MAX_RANK = 8
MAX_SIZE = 1_000_000


def asks_input_shapes(path: str | Path) -> bool:
    """Whether `path` is a TorchScript archive that records no input shape, so opening it needs them first."""
    path = Path(path)
    if not path.is_file() or not torchscript.is_archive(path):
        return False
    try:
        return not torchscript.inputs(path).recorded
    except ModelFormatError:  # a damaged archive: the open itself says what is wrong
        return False


def parse_shape(text: str) -> tuple[int, ...]:
    """`1, 3, 224, 224` (or `1x3x224x224`) as a shape; ValueError in one line for anything else."""
    parts = [p.strip() for p in text.replace("x", ",").replace("×", ",").split(",")]
    if not text.strip() or not all(p.isdigit() for p in parts):
        raise ValueError("sizes are whole numbers separated by commas, like 1,3,224,224")
    shape = tuple(int(p) for p in parts)
    if len(shape) > MAX_RANK or not all(0 < d <= MAX_SIZE for d in shape):
        raise ValueError(f"at most {MAX_RANK} sizes, each from 1 to {MAX_SIZE:,}")
    return shape


class InputShapeDialog(QDialog):
    """One field per input of the archive's forward, the first prefilled from its first layer's weight; `chosen`
    carries the shapes by input name."""

    chosen = Signal(dict)

    def __init__(self, path: str | Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Input shape")
        self.setObjectName("inputShapeDialog")
        found = torchscript.inputs(path)
        guess = ",".join(str(d) for d in found.guess) if found.guess else ""
        what = " of token ids (whole numbers, read as int64)" if found.integer else ""
        plural = "s" if len(found.names) > 1 else ""
        self.intro = intro = QLabel(
            f"<b>{escape(Path(path).name)}</b> is a scripted TorchScript archive: it records no input shape. The graph "
            f"is read from its code at the shape{plural} given here{what}; data loaded later reads it again at the "
            "data's.")
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.RichText)
        form = QFormLayout()
        self.fields: dict[str, QLineEdit] = {}
        for i, name in enumerate(found.names):
            field = QLineEdit(guess if i == 0 or found.integer else "")
            field.setObjectName(f"inputShape_{name}")
            field.setPlaceholderText("e.g. 1,3,224,224")
            form.addRow(name, field)
            self.fields[name] = field
        self.error = QLabel()
        self.error.setObjectName("inputShapeError")
        self.error.setStyleSheet("color: #c62828")
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance("x") * 60)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes typed, by input name; ValueError naming the first field that is not a shape."""
        shapes = {}
        for name, field in self.fields.items():
            try:
                shapes[name] = parse_shape(field.text())
            except ValueError as exc:
                field.setFocus()
                raise ValueError(f"{name}: {exc}") from None
        return shapes

    @guarded
    def accept(self) -> None:
        try:
            shapes = self.shapes()
        except ValueError as exc:  # said under the fields; the dialog stays open
            self.error.setText(str(exc))
            self.error.show()
            return
        super().accept()
        self.chosen.emit(shapes)
