"""The graph canvas: a QGraphicsView over the session's graph."""

from .view import GraphView

__all__ = ["GraphView"]
