"""Diffs on the graph: two states of a network compared node by node (debugger.diff), in a dock; the two
backends' runs (Compare backends) are one more such comparison, with their tolerance verdict.

`wiring.install_diff` gives the window the dock and its Debug menu entry; the view (`view.py`) and the
inspector's A, B and A − B (`in_inspector.py`) are made, and their modules imported, when the dock is first
opened. This package's `__init__` imports nothing, so the wiring costs the window's start-up nothing more.
"""
