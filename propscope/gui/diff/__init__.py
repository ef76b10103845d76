"""Diffs on the graph: two states of a network compared node by node (debugger.diff), in a dock."""

from .view import DiffView, change_color
from .wiring import install_diff

__all__ = ["DiffView", "change_color", "install_diff"]
