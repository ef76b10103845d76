"""The data set to train on: the example's own data, or a generated one with its size, noise, seed and test split.

Editing a field asks for new data a moment later (`changed`, debounced), so typing "200" does not
build three data sets on the way. The form only says what was chosen; the dock builds the data.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

from ...graph.datasets import GENERATORS
from .form import clamped

OWN = ""  # the combo's data for the example's (or file's) own batch
DEBOUNCE_MS = 300


class DataForm(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = QComboBox()
        self.name.setObjectName("datasetBox")
        self.name.addItem("example's data", OWN)
        for key, (_gen, task, summary) in GENERATORS.items():
            self.name.addItem(key, key)
            self.name.setItemData(self.name.count() - 1, f"{summary} ({task})", Qt.ItemDataRole.ToolTipRole)
        self.name.setToolTip("Train on the example's own data, or on a generated 2-D data set")
        self.size = QSpinBox()
        self.size.setObjectName("datasetSize")
        self.size.setRange(1, 1_000_000)
        self.size.setGroupSeparatorShown(True)
        self.noise = QDoubleSpinBox()
        self.noise.setObjectName("datasetNoise")
        self.noise.setRange(0.0, 5.0)
        self.noise.setSingleStep(0.05)
        self.noise.setDecimals(2)
        self.seed = QSpinBox()
        self.seed.setObjectName("datasetSeed")
        self.seed.setRange(0, 2**31 - 1)
        self.test = QDoubleSpinBox()
        self.test.setObjectName("testSplit")
        self.test.setRange(0.0, 0.9)
        self.test.setSingleStep(0.05)
        self.test.setDecimals(2)
        self.test.setToolTip("Fraction held out to measure the test loss")
        self.classes = QSpinBox()
        self.classes.setObjectName("datasetClasses")
        self.classes.setRange(2, 10)
        self.classes.setToolTip("Classes (spiral and blobs)")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Data", self.name)
        form.addRow("Samples", self.size)
        form.addRow("Noise", self.noise)
        form.addRow("Seed", self.seed)
        form.addRow("Test split", self.test)
        form.addRow("Classes", self.classes)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.changed)
        self._loading = False
        self.name.currentIndexChanged.connect(lambda _i: self._edited())
        for box in (self.size, self.noise, self.seed, self.test, self.classes):
            box.valueChanged.connect(lambda _v: self._edited())
        self._enable()

    def _edited(self) -> None:
        self._enable()
        if not self._loading:
            self._timer.start()

    def _enable(self) -> None:
        generated = self.name.currentData() != OWN
        for box in (self.size, self.noise, self.seed, self.test, self.classes):
            box.setEnabled(generated)  # and all of them stay disabled while the form itself is

    def load(self, name: str, options: dict[str, Any], seed: int) -> None:
        """Show a data set's settings without asking for new data (it is the one the session has)."""
        self._loading = True
        try:
            self.name.setCurrentIndex(max(0, self.name.findData(name)))
            # clamped: a file may suggest 1e10 samples, more than a spin box holds
            self.size.setValue(clamped(self.size, options.get("n", 200)))
            self.noise.setValue(clamped(self.noise, options.get("noise", 0.1)))
            self.seed.setValue(clamped(self.seed, options.get("seed", seed)))
            self.test.setValue(clamped(self.test, options.get("test_fraction", 0.0)))
            self.classes.setValue(clamped(self.classes, options.get("classes", 3)))
        finally:
            self._loading = False
        self._enable()

    def flush(self) -> bool:
        """Ask for the new data now if a change is waiting; True when it was."""
        if self._timer.isActive():
            self._timer.stop()
            self.changed.emit()
            return True
        return False

    def spec(self) -> tuple[str, dict[str, Any]] | None:
        """None for the example's own data, else (generator name, make_dataset's keyword arguments)."""
        name = self.name.currentData()
        if name == OWN:
            return None
        return name, {"n": self.size.value(), "noise": self.noise.value(), "seed": self.seed.value(),
                      "test_fraction": self.test.value(), "classes": self.classes.value()}
