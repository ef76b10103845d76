"""The `propscope` command. The GUI is imported only when a window is asked for."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends import BACKENDS, DTYPES
from .graph.errors import PropscopeError

EPILOG = "TARGET is a built-in example name (see `propscope examples`) or a model file path."


def _session_args(p: argparse.ArgumentParser, loss: bool = True) -> None:
    p.add_argument("target", metavar="TARGET", help="example name or model file")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="float precision (default float32)")
    p.add_argument("--seed", type=int, default=0, help="seed for the example's initial weights (default 0)")
    p.add_argument("--data", metavar="D", help=".npz with `x` (or arrays named after the inputs) and `y`; or .csv")
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="numpy (hand-written) or torch (autograd)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (torch backend)")
    if loss:
        p.add_argument("--loss", metavar="NAME", help="mse, sse, bce, cross_entropy, or none (forward only)")


def _open(args: argparse.Namespace, dtype: str | None = None) -> Any:
    from .debugger import open_session

    return open_session(
        args.target,
        backend=args.backend,
        dtype=dtype or args.dtype,
        seed=args.seed,
        data=args.data,
        loss=getattr(args, "loss", None),
        device=args.device,
    )


# -- commands ------------------------------------------------------------------------------
def cmd_examples(args: argparse.Namespace) -> int:
    from .graph.examples import EXAMPLES

    width = max(len(n) for n in EXAMPLES)
    for name, ex in EXAMPLES.items():
        print(f"{name:<{width}}  {ex.summary}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .graph.readers import load_target

    model = load_target(args.target, seed=args.seed)
    g = model.graph
    ops: dict[str, int] = {}
    for n in g.ops:
        ops[n.op.name] = ops.get(n.op.name, 0) + 1
    info = {
        "name": g.name,
        "description": model.description,
        "nodes": len(g),
        "ops": ops,
        "parameters": {n.name: list(n.shape) for n in g.parameters},
        "parameter_count": int(sum(int(np.prod(n.shape)) for n in g.parameters)),
        "inputs": {n.name: list(n.shape) for n in g.inputs},
        "outputs": {n.name: list(n.shape) for n in g.outputs},
        "loss": model.loss,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{g.name}: {model.description}")
    print(f"  {len(g)} nodes, {len(g.ops)} ops, {info['parameter_count']} parameters, default loss: {model.loss}")
    print("  ops:        " + ", ".join(f"{k} ×{v}" for k, v in ops.items()))
    for title, group in (("inputs", g.inputs), ("parameters", g.parameters), ("outputs", g.outputs)):
        print(f"  {title}:")
        for n in group:
            print(f"    {n.name:<16} {n.shape}")
    return 0


def _steps_json(session: Any) -> str:
    out = []
    for record in session.trace.records:
        entry: dict[str, Any] = {
            "index": record.index,
            "phase": record.phase,
            "node": record.node.name,
            "op": record.node.op.name,
            "inputs": [a.name for a in record.node.inputs],
            "shape": list(record.node.shape),
        }
        if record.phase == "forward":
            entry["formula"] = record.node.op.formula
        else:
            entry["terms"] = [
                {"input": t.input.name, "local": t.formula, "arrival": t.arrival, "consumers": t.consumers}
                for t in record.terms
            ]
        out.append(entry)
    return json.dumps(out)


def cmd_trace(args: argparse.Namespace) -> int:
    from .debugger.metrics import METRICS

    s = _open(args)
    s.run_to_end()
    arrays: dict[str, np.ndarray] = {}
    for node in s.graph:
        value = s.value(node.name)
        if value is not None:
            arrays[f"value/{node.name}"] = np.asarray(value)
        grad = s.grad(node.name)
        if grad is not None:
            arrays[f"grad/{node.name}"] = np.asarray(grad)
    loss = s.loss_node
    if loss is not None:
        arrays["loss"] = np.asarray(s.value(loss.name))
    arrays["steps"] = np.array(_steps_json(s))
    out = Path(args.out)
    with out.open("wb") as fh:  # a file object, so that numpy does not append .npz to the name given
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    print(f"{s.name}: {len(s.steps)} steps on {s.backend.name}/{s.backend.dtype}")
    if loss is not None:
        print(f"  loss ({loss.op.name}) = {float(arrays['loss']):.10g}")
        pred = s.value(s.prediction_node.name)
        for metric in s.model.metrics:
            if metric not in METRICS:  # a model file may name a metric this version does not know
                print(f"  {metric}: unknown metric, not computed (known: {', '.join(METRICS)})")
                continue
            print(f"  {metric} = {METRICS[metric](pred, s.batch['y']):.10g}")
    bad = s.trace.first_nonfinite
    if bad is not None:
        index, node = bad
        phase = s.steps[index].phase
        print(f"  warning: first non-finite value at {phase} step {index + 1}: {node.op.name} {node.name}")
    print(f"  wrote {len(arrays)} arrays to {out}")
    return 0


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from .debugger.gradcheck import gradcheck

    s = _open(args, dtype="float64")
    rows = gradcheck(s)
    worst = max((r.relative_error for r in rows), default=0.0)
    width = max([len(r.name) for r in rows] + [4])
    print(f"{s.name}: gradient check in float64 on {s.backend.name}, tolerance {args.tol:g}")
    for r in rows:
        flag = "ok" if r.relative_error <= args.tol else "FAIL"
        print(f"  {r.name:<{width}}  {r.kind:<9}  rel {r.relative_error:.2e}  abs {r.max_abs_error:.2e}  {flag}")
    if worst > args.tol:
        print(f"propscope: gradient check failed: worst relative error {worst:.2e} > {args.tol:g}", file=sys.stderr)
        return 1
    print(f"  all {len(rows)} gradients agree (worst relative error {worst:.2e})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .backends import get_backend
    from .debugger import open_session
    from .debugger.compare import compare_backends

    s = open_session(args.target, dtype=args.dtype, seed=args.seed, data=args.data, loss=args.loss)
    s.run_to_end()
    result = compare_backends(s, get_backend("torch", args.dtype, args.device), tolerance=args.tol)
    print(f"{s.name}: {result.reference} vs {result.other}, {result.steps} steps, "
          f"tolerance {result.tolerance:g}")
    width = max([len(d.name) for d in result.nodes] + [4])
    print(f"  {'node':<{width}}  {'op':<13}  {'value diff':>10}  {'grad diff':>10}")
    for d in result.worst(args.top):
        values = "  ".join(f"{'-' if x != x else f'{x:.2e}':>10}" for x in (d.value_diff, d.grad_diff))
        print(f"  {d.name:<{width}}  {d.op:<13}  {values}  {'ok' if result.node_ok(d) else 'FAIL'}")
    if not result.passed:
        names = ", ".join(d.name for d in result.failures)
        print(f"propscope: backends differ beyond {result.tolerance:g} at: {names}", file=sys.stderr)
        return 1
    print(f"  all {len(result.nodes)} nodes agree (largest difference {result.max_diff:.2e})")
    return 0


def cmd_debug(args: argparse.Namespace) -> int:
    from .debugger.repl import DebuggerShell

    DebuggerShell(_open(args)).cmdloop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="propscope",
        description="Step through the forward and backward pass of a neural network, one op at a time.",
        epilog="With no command, the desktop app opens on the xor lesson.",
    )
    parser.add_argument("--version", action="version", version=f"propscope {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("examples", help="list the built-in examples")
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser("inspect", help="nodes by op, parameters, inputs and outputs", epilog=EPILOG)
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("trace", help="one forward and backward pass, every value and gradient saved", epilog=EPILOG)
    _session_args(p)
    p.add_argument("--out", required=True, metavar="T.npz", help="where to write the trace")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("gradcheck", help="compare gradients with finite differences (float64)", epilog=EPILOG)
    _session_args(p)
    p.add_argument("--tol", type=float, default=1e-7, help="largest relative error allowed (default 1e-7)")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("compare", help="the same pass on NumPy and on torch, node by node", epilog=EPILOG)
    p.add_argument("target", metavar="TARGET", help="example name or model file")
    p.add_argument("--dtype", choices=DTYPES, default="float64", help="float precision (default float64)")
    p.add_argument("--seed", type=int, default=0, help="seed for the example's initial weights (default 0)")
    p.add_argument("--data", metavar="D", help=".npz with `x` (or arrays named after the inputs) and `y`")
    p.add_argument("--loss", metavar="NAME", help="mse, sse, bce, cross_entropy, or none (forward only)")
    p.add_argument("--device", default="cpu", help="where torch runs: cpu, cuda or cuda:N")
    p.add_argument("--tol", type=float, help="largest difference allowed (default 1e-10 float64, 1e-5 float32)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="how many worst nodes to list (default 10)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("debug", help="a pdb-style debugger in the terminal", epilog=EPILOG)
    _session_args(p)
    p.set_defaults(func=cmd_debug)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["open", "xor"]) if "open" in parser._subparsers._actions[-1].choices else args  # type: ignore[union-attr]
        if args.command is None:
            parser.print_help()
            return 0
    try:
        return int(args.func(args))
    except PropscopeError as exc:
        print(f"propscope: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"propscope: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("propscope: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
