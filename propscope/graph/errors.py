"""Errors a user can act on: every message names what and where."""


class PropscopeError(Exception):
    """Base of every error propscope reports to a user as one sentence."""


class GraphError(PropscopeError):
    """A graph that cannot be built: unknown op, wrong arity, duplicate name."""


class ShapeError(GraphError):
    """Shapes that do not fit, with the node and the shapes named."""


class ModelFormatError(PropscopeError):
    """A model file that cannot be read: says which file and what is wrong with it."""


class UnsupportedOpError(GraphError):
    """An op outside the catalog, named, so the user knows what is missing."""
