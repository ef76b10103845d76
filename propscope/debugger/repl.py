"""`propscope debug`: the session in a terminal, with commands in the style of pdb.

It needs no screen (it works over SSH), which is also the proof that the Session needs no GUI.
"""

from __future__ import annotations

import cmd
import shlex
from typing import IO, Any

import numpy as np

from ..graph.errors import PropscopeError
from .breakpoints import GradNormBreakpoint
from .session import Session
from .steps import BackwardStep, ForwardStep

SMALL = 64  # tensors up to this many elements are printed in full


def nonfinite_text(arr: np.ndarray) -> str:
    """`1 NaN of 589,824`, `2 NaN, 3 +inf of 12` (counts of NaN, +inf and -inf entries); "" when all are finite.

    Said before any statistic: a NaN in a large tensor is the one thing a summary must not hide."""
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.inexact):
        return ""
    nan = np.isnan(arr)
    inf = ~np.isfinite(arr) & ~nan
    if np.iscomplexobj(arr):  # a complex infinity has no sign
        counts = [(int(np.count_nonzero(nan)), "NaN"), (int(np.count_nonzero(inf)), "inf")]
    else:
        counts = [
            (int(np.count_nonzero(nan)), "NaN"),
            (int(np.count_nonzero(inf & (arr > 0))), "+inf"),
            (int(np.count_nonzero(inf & (arr < 0))), "-inf"),
        ]
    parts = [f"{n:,} {what}" for n, what in counts if n]
    return f"{', '.join(parts)} of {arr.size:,}" if parts else ""


def fmt_array(value: Any) -> str:
    """A value as the debugger prints it: in full up to SMALL entries, else shape, dtype, min, max and mean.

    Where entries are NaN or infinite, their counts come first (`1 NaN of 589,824`) and the statistics are those of
    the finite entries, labelled so: nanmin/nanmax would show a tensor holding a NaN as clean."""
    if value is None:
        return "(not computed yet at this step)"
    arr = np.asarray(value)
    head = f"shape {arr.shape} {arr.dtype}"
    bad = nonfinite_text(arr)
    if bad:
        head += f"  NOT FINITE: {bad}"
    if arr.size <= SMALL:
        body = np.array2string(arr, precision=6, suppress_small=False, max_line_width=100)
        return f"{head}\n{body}"
    if not bad:
        return f"{head}  min {arr.min():.6g}  max {arr.max():.6g}  mean {arr.mean():.6g}"
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return f"{head}  (no finite entry)"
    return f"{head}  finite entries: min {finite.min():.6g}  max {finite.max():.6g}  mean {finite.mean():.6g}"


def describe_step(session: Session) -> str:
    """The step just taken, with the chain rule spelled out for a backward step."""
    step = session.current
    lines = [session.position_text()]
    if isinstance(step, ForwardStep):
        lines.append(f"  {step.node.op.formula}")
        lines.append("  output " + fmt_array(session.backend.to_numpy(step.output)).replace("\n", "\n  "))
    elif isinstance(step, BackwardStep):
        op = step.node.op
        lines.append(
            f"  upstream ∂L/∂{step.node.name}: "
            + fmt_array(session.backend.to_numpy(step.upstream)).replace("\n", "\n  ")
        )
        partials = session.trace.partials(step)
        for term in step.terms:
            share = f"contribution {term.arrival} of {term.consumers}" if term.consumers > 1 else "its only consumer"
            lines.append(f"  → {term.input.name} ({op.role(term.position)}): {term.formula}   [{share}]")
            if partials is not None and partials[term.position] is not None:
                local = session.backend.to_numpy(partials[term.position])
                lines.append("    local: " + fmt_array(local).replace("\n", "\n    "))
            lines.append(
                "    contribution = upstream × local: "
                + fmt_array(session.backend.to_numpy(term.contribution)).replace("\n", "\n    ")
            )
            if term.total_before is not None:
                lines.append(
                    "    running total ∂L/∂"
                    + term.input.name
                    + ": "
                    + fmt_array(session.backend.to_numpy(term.total)).replace("\n", "\n    ")
                )
    return "\n".join(lines)


class DebuggerShell(cmd.Cmd):
    intro = "propscope debugger. Type help or ? to list commands; step with s, back with b, quit with q."

    def __init__(self, session: Session, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> None:
        super().__init__(stdin=stdin, stdout=stdout)
        if stdin is not None:
            self.use_rawinput = False
        self.session = session
        self.prompt = f"(propscope {session.name}) "

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")

    def onecmd(self, line: str) -> bool:
        try:
            return super().onecmd(line)
        except PropscopeError as exc:
            self.say(f"*** {exc}")
            return False

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> None:
        self.say(f"*** unknown command {line.split()[0]!r}; type help")

    # -- moving ----------------------------------------------------------------------------
    def do_step(self, arg: str) -> None:
        """step [N]: take the next N steps (default 1). Also: s, n."""
        for _ in range(int(arg or 1)):
            if self.session.step() is None:
                self.say("at the end of the backward pass")
                break
        self.say(describe_step(self.session))

    do_s = do_n = do_step

    def do_back(self, arg: str) -> None:
        """back [N]: undo the last N steps exactly (default 1). Also: b."""
        for _ in range(int(arg or 1)):
            self.session.step_back()
        self.say(describe_step(self.session))

    do_b = do_back

    def do_continue(self, arg: str) -> None:
        """continue: run to the next breakpoint or the end. Also: c."""
        stop = self.session.continue_()
        self.say(str(stop) if stop else "reached the end")
        self.say(describe_step(self.session))

    do_c = do_continue

    def do_run(self, arg: str) -> None:
        """run NODE [forward|backward]: move to the step of NODE (forward by default)."""
        args = shlex.split(arg)
        if not args:
            self.say("*** usage: run NODE [forward|backward]")
            return
        self.session.run_to(args[0], args[1] if len(args) > 1 else "forward")
        self.say(describe_step(self.session))

    def do_reset(self, arg: str) -> None:
        """reset: back to before the first step."""
        self.session.reset()
        self.say(self.session.position_text())

    def do_end(self, arg: str) -> None:
        """end: run every remaining step (ignoring breakpoints)."""
        self.session.run_to_end()
        self.say(describe_step(self.session))

    # -- breakpoints -----------------------------------------------------------------------
    def do_break(self, arg: str) -> None:
        """break NODE [forward|backward] | break nan | break norm >X | break norm <X | break: list them."""
        args = shlex.split(arg)
        s = self.session
        if not args:
            listed = [str(b) for b in s.breakpoints] + (["on NaN/Inf"] if s.break_on_nonfinite else [])
            self.say("\n".join(listed) if listed else "no breakpoints")
        elif args[0] == "nan":
            s.break_on_nonfinite = True
            self.say("will stop at the first op that produces NaN or Inf")
        elif args[0] == "norm" and len(args) == 2 and args[1][:1] in "<>":
            bound = float(args[1][1:])
            s.add_breakpoint(GradNormBreakpoint(above=bound) if args[1][0] == ">" else GradNormBreakpoint(below=bound))
            self.say(f"will stop when a gradient norm is {args[1][0]} {bound:g}")
        else:
            bp = s.add_breakpoint(args[0], args[1] if len(args) > 1 else None)
            self.say(f"breakpoint set: {bp}")

    def do_clear(self, arg: str) -> None:
        """clear [NODE]: remove the breakpoint on NODE, or all breakpoints."""
        if arg.strip():
            self.session.remove_breakpoint(arg.strip())
        else:
            self.session.clear_breakpoints()
        self.say("cleared")

    # -- reading ---------------------------------------------------------------------------
    def do_print(self, arg: str) -> None:
        """print NODE: the value of NODE as known at this step. Also: p."""
        name = self._node_argument(arg, "print NODE, e.g. print hidden_output")
        if name is not None:
            self.say(f"{name} = " + fmt_array(self.session.value(name)))

    do_p = do_print

    def do_grad(self, arg: str) -> None:
        """grad NODE: the gradient dL/dNODE as known at this step (the running total so far)."""
        name = self._node_argument(arg, "grad NODE, e.g. grad W1")
        if name is not None:
            self.say(f"∂L/∂{name} = " + fmt_array(self.session.grad(name)))

    def _node_argument(self, arg: str, usage: str) -> str | None:
        """The one node name a command takes; without it, the command's usage line (and None)."""
        name = arg.strip()
        if not name:
            self.say(f"*** usage: {usage} (nodes lists the names)")
            return None
        return name

    def do_explain(self, arg: str) -> None:
        """explain NAME I [J ...]: every path from one element to the loss, and their sum."""
        args = shlex.split(arg)
        if not args:
            self.say("*** usage: explain NAME [index ...], e.g. explain W1 0 2")
            return
        self.say(self.session.explain(args[0], tuple(int(i) for i in args[1:])).text())

    def do_flow(self, arg: str) -> None:
        """flow [activations | units] [flagged]: every parameter's gradient after the whole backward pass, in forward
        order, or with `activations` ∂L/∂h at every module output, with the vanishing, exploding and non-finite ones
        flagged; with `units`, every activation function's dead and saturated units after the forward pass (the
        cursor stays where it is)."""
        from .grad_flow import ActivationGradientFlow, GradientFlow, activation_flow, gradient_flow
        from .unit_health import UnitHealth, unit_health

        words = arg.split()
        unknown = sorted(set(words) - {"activations", "units", "flagged"})
        if unknown or {"activations", "units"} <= set(words):
            self.say(f"*** usage: flow [activations | units] [flagged] (not {arg.strip()})")
            return
        flow: GradientFlow | ActivationGradientFlow | UnitHealth
        if "units" in words:
            flow = unit_health(self.session)
        else:
            flow = activation_flow(self.session) if "activations" in words else gradient_flow(self.session)
        self.say(flow.text(flagged_only="flagged" in words))
        self.say(flow.summary())

    def do_list(self, arg: str) -> None:
        """list: the schedule around the cursor (the step just taken is marked). Also: l, where."""
        s = self.session
        lo, hi = max(0, s.cursor - 6), min(len(s.steps), s.cursor + 6)
        marks = s.node_breakpoints()
        for planned in s.steps[lo:hi]:
            arrow = "->" if planned.index == s.cursor - 1 else "  "
            dot = "●" if planned.node.name in marks else " "
            node = planned.node
            self.say(f"{arrow}{dot} {planned.index + 1:>4}  {planned.phase:<8} {node.op.name:<12} {node.name}")
        self.say(s.position_text())

    do_l = do_where = do_list

    def do_nodes(self, arg: str) -> None:
        """nodes: every node with its op and shape."""
        for n in self.session.graph:
            self.say(f"  {n.name:<20} {n.op.name:<14} {n.shape}")

    def do_quit(self, arg: str) -> bool:
        """quit: leave the debugger. Also: q, EOF (Ctrl-D)."""
        return True

    do_q = do_EOF = do_quit
