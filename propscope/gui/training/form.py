"""The training settings: optimizer with its hyperparameters, learning rate, epochs and batch size.

The hyperparameters and their defaults come from the optimizer table (PyTorch's names and
defaults), so the form never lists one the optimizer would refuse. The example's own settings
are the starting values. Values are only read here; the optimizer checks them and says what is wrong.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...backends.optimizers import OPTIMIZERS, hyperparameters

MAX_EPOCHS = 10_000_000


class FormError(ValueError):
    """A field that does not hold a value of its kind; the message names the field."""


def _number_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(_number_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


class TrainingForm(QWidget):
    changed = Signal()  # the hyperparameters were edited (they may apply to a run in progress)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.optimizer = QComboBox()
        self.optimizer.setObjectName("optimizerBox")
        for name, cls in OPTIMIZERS.items():
            self.optimizer.addItem(name, name)
            self.optimizer.setItemData(self.optimizer.count() - 1, (cls.__doc__ or "").split("\n")[0],
                                       Qt.ItemDataRole.ToolTipRole)
        self.optimizer.setToolTip("The update rule (torch.optim's, with PyTorch's defaults)")
        self.lr = QLineEdit()
        self.lr.setObjectName("learningRate")
        self.lr.setToolTip("Learning rate: how far each step moves the parameters (applies at once, even mid-run)")
        self.epochs = QSpinBox()
        self.epochs.setObjectName("epochs")
        self.epochs.setRange(1, MAX_EPOCHS)
        self.epochs.setGroupSeparatorShown(True)
        self.epochs.setToolTip("How many epochs Play trains")
        self.batch = QSpinBox()
        self.batch.setObjectName("batchSize")
        self.batch.setRange(0, 1_000_000)
        self.batch.setSpecialValueText("full batch")
        self.batch.setToolTip("Samples per optimizer step; 0 = the whole data set each step")
        self.more = QToolButton()
        self.more.setText("Hyperparameters")
        self.more.setCheckable(True)
        self.more.setArrowType(Qt.ArrowType.RightArrow)
        self.more.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.more.setAutoRaise(True)
        self.more.toggled.connect(self._show_more)
        self.extra = QWidget()
        self.extra_form = QFormLayout(self.extra)
        self.extra_form.setContentsMargins(12, 0, 0, 0)
        self.extra.setVisible(False)
        self.editors: dict[str, QWidget] = {}
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Optimizer", self.optimizer)
        form.addRow("Learning rate", self.lr)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(form)
        lay.addWidget(self.more)
        lay.addWidget(self.extra)
        self.optimizer.currentIndexChanged.connect(lambda _i: self._build_editors())
        self.lr.editingFinished.connect(self.changed)
        self._build_editors()

    def _show_more(self, on: bool) -> None:
        self.extra.setVisible(on)
        self.more.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def _build_editors(self) -> None:
        """One editor per hyperparameter of the chosen optimizer (but lr, which has its own row)."""
        while self.extra_form.rowCount():
            self.extra_form.removeRow(0)
        self.editors = {}
        for key, default in hyperparameters(self.optimizer.currentData()).items():
            if key == "lr":
                continue
            editor: QWidget
            if isinstance(default, bool):
                editor = QCheckBox()
                editor.setChecked(default)
                editor.toggled.connect(self.changed)
            else:
                editor = QLineEdit(_number_text(default))
                editor.editingFinished.connect(self.changed)
            editor.setObjectName(f"hparam_{key}")
            self.editors[key] = editor
            self.extra_form.addRow(key, editor)

    # -- values ------------------------------------------------------------------------------------
    def load(self, optimizer: str, lr: float, epochs: int, batch_size: int | None) -> None:
        """Show these settings (an example's defaults, or the command line's)."""
        i = self.optimizer.findData(optimizer)
        self.optimizer.setCurrentIndex(max(0, i))
        self.lr.setText(_number_text(float(lr)))
        self.epochs.setValue(clamped(self.epochs, epochs))  # a file may suggest 1e12 epochs: the box's range
        self.batch.setValue(clamped(self.batch, batch_size or 0))

    def hparams(self) -> dict[str, Any]:
        """The learning rate and every other hyperparameter, as typed (FormError for a non-number)."""
        values: dict[str, Any] = {"lr": self._number("learning rate", self.lr.text())}
        for key, editor in self.editors.items():
            if isinstance(editor, QCheckBox):
                values[key] = editor.isChecked()
            else:
                assert isinstance(editor, QLineEdit)
                parts = [self._number(key, p) for p in editor.text().split(",")]
                values[key] = tuple(parts) if len(parts) > 1 else parts[0]
        return values

    @staticmethod
    def _number(name: str, text: str) -> float:
        try:
            return float(text.strip().replace("−", "-"))
        except ValueError:
            raise FormError(f"{name}: {text.strip()!r} is not a number") from None

    @property
    def optimizer_name(self) -> str:
        return str(self.optimizer.currentData())

    @property
    def batch_size(self) -> int | None:
        return self.batch.value() or None


def clamped(box: Any, value: Any) -> Any:
    """`value` within a spin box's range (a QSpinBox overflows past 2³¹); NaN or junk: the box's minimum."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return box.minimum()
    if number != number:
        return box.minimum()
    number = min(max(number, float(box.minimum())), float(box.maximum()))
    return int(number) if isinstance(box.minimum(), int) else number
