"""What the user is looking at: one node and, optionally, one element of it, shared by every view."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

Index = tuple[int, ...]


class Selection(QObject):
    """Node + element index. `follow` makes stepping select the step's node (unless pinned)."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.node: str | None = None
        self.index: Index | None = None
        self.pinned = False

    def select(self, node: str | None, index: Index | None = None) -> None:
        if (node, index) != (self.node, self.index):
            self.node, self.index = node, index
            self.changed.emit()

    def select_element(self, index: Index | None) -> None:
        self.select(self.node, index)

    def follow(self, node: str, shape: tuple[int, ...]) -> None:
        """Stepping moved to `node`: select it, keeping the element where it still fits the shape."""
        if self.pinned:
            return
        index = self.index
        if index is not None and (len(index) != len(shape) or any(i >= d for i, d in zip(index, shape, strict=True))):
            index = None
        self.select(node, index)
