"""Diffs on the graph: two states of a network compared node by node (debugger.diff), in a dock; the two
backends' runs (Compare backends) are one more such comparison, with their tolerance verdict."""

from .view import DiffView, change_color
from .wiring import install_diff, show_backends

__all__ = ["DiffView", "change_color", "install_diff", "show_backends"]
