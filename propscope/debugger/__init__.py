"""What a person DRIVES: the Session, its steps and breakpoints, explain, gradcheck, the trainer."""

from .breakpoints import GradNormBreakpoint, NodeBreakpoint, NonFiniteBreakpoint, Stop
from .session import Session, open_session
from .steps import BACKWARD, FORWARD, BackwardStep, ForwardStep, GradTerm, PlannedStep

__all__ = [
    "BACKWARD", "FORWARD", "BackwardStep", "ForwardStep", "GradNormBreakpoint", "GradTerm", "NodeBreakpoint",
    "NonFiniteBreakpoint", "PlannedStep", "Session", "Stop", "open_session",
]
