"""The `propscope` command. The GUI is imported only when a window is asked for."""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends import BACKENDS, DTYPES
from .graph.datasets import NORMALIZE_CHOICES
from .graph.errors import PropscopeError

EPILOG = ("TARGET is a built-in example name (see `propscope examples`), a model file path, a transformers or timm "
          "checkpoint folder, or torchvision:NAME[@SIZE] or timm:NAME[@SIZE].")
TARGET_HELP = ("example name, model file, transformers or timm checkpoint folder (config.json + weights), or "
               "torchvision:NAME[@SIZE] or timm:NAME[@SIZE] (random weights)")
ARCH_HELP = ("for a state dict or checkpoint (.pt, .pth, .ckpt, .pth.tar, .bin, .safetensors): the example, model "
             "file, torchvision:NAME or timm:NAME (e.g. torchvision:resnet18) whose weights it holds")


class CommandParser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line told in one line instead of the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("propscope").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"propscope: error: {where}{message} (see {self.prog} --help)\n")


def _writable(path: str, option: str) -> None:
    """Refuse an output path that cannot be written before any work is done (not after an hour of training)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise PropscopeError(f"{option} {path}: is a folder; give a file name")
    if not folder.is_dir():
        raise PropscopeError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise PropscopeError(f"{option} {path}: not allowed to write there")


OUTPUT_HELP = ("which of a model's several outputs the loss goes on, by name or position (default: the "
               "first; `inspect` lists them)")


PER_TOKEN_HELP = ("cross-entropy over a language model's (batch, tokens, vocabulary) logits, a row per token against "
                  "(batch, tokens) labels: the next tokens, already shifted (a transformers model shifts its "
                  "labels= itself); -100 marks padding. Labels of that shape in --data read them so without it; "
                  "torch's cross-entropy takes the classes on axis 1")


def _session_args(p: argparse.ArgumentParser, loss: bool = True) -> None:
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="float precision (default float32)")
    p.add_argument("--seed", type=int, default=0, help="seed for the example's initial weights (default 0)")
    p.add_argument("--data", metavar="D", help=".npz with `x` (or arrays named after the inputs) and `y`; or .csv; or "
                   "an image (.png, .jpg...), resized to the model's image input, its pixels / 255 normalized as "
                   "--normalize says")
    p.add_argument("--normalize", metavar="N", help=f"an image's pixels / 255: {NORMALIZE_CHOICES} (default model)")
    p.add_argument("--label", type=int, metavar="C", help="an image's class for cross-entropy (default: drawn at "
                   "random, and said)")
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="numpy (hand-written) or torch (autograd)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (torch backend)")
    p.add_argument("--arch", metavar="A", help=ARCH_HELP)
    if loss:
        p.add_argument("--loss", metavar="NAME", help="mse, sse, bce, cross_entropy, or none (forward only)")
        p.add_argument("--output", metavar="NAME", help=OUTPUT_HELP)
        p.add_argument("--per-token", action="store_true", help=PER_TOKEN_HELP)


def _open(args: argparse.Namespace, dtype: str | None = None) -> Any:
    from .debugger import open_session

    return _noted(open_session(
        args.target,
        backend=args.backend,
        dtype=dtype or args.dtype,
        seed=args.seed,
        data=args.data,
        loss=getattr(args, "loss", None),
        device=args.device,
        arch=getattr(args, "arch", None),
        output=getattr(args, "output", None),
        per_token=getattr(args, "per_token", False),
        normalize=getattr(args, "normalize", None),
        label=getattr(args, "label", None),
    ), args)


def _noted(session: Any, args: argparse.Namespace) -> Any:
    """`session`, after saying on stderr what its numbers stand on: what the reader could not map or load (weights a
    state dict lacked, a wrong architecture's misses, float32 casts), parameters that hold NaN or infinite values
    themselves, and which output its loss went on where the model has several and the user did not choose."""
    from .graph.datasets import image_note, is_image
    from .graph.ops.shapes import fmt as fmt_shape
    from .graph.ops.unsupported import unsupported_summary

    blocked = unsupported_summary(session.model.graph)  # said by the error stepping meets, in one line
    for warning in session.model.warnings:
        if warning != blocked:
            print(f"propscope: warning: {warning}", file=sys.stderr)
    broken = _nonfinite_parameters(session.model.parameters)
    if broken:
        print(f"propscope: warning: {broken}", file=sys.stderr)
    if getattr(args, "data", None) is not None:  # a NaN in the data, said before any op is blamed for it
        from .graph.datasets import nonfinite_note

        said = nonfinite_note(session.batch)
        if said:
            print(f"propscope: warning: {said}", file=sys.stderr)
    if getattr(args, "data", None) is not None and is_image(args.data):  # how a photo became the model's input
        print(f"propscope: note: {image_note(args.data, session.model)}", file=sys.stderr)
    if getattr(args, "data", None) is not None and session.target_drawn:  # an image: data that carries no label
        print(f"propscope: note: {Path(args.data).name} carries no label: {session.drawn_target_note()}; --label C "
              "gives yours (--loss none: forward only)", file=sys.stderr)
    if session.loss_from_labels:
        kind = "whole-number" if session.loss_name == "cross_entropy" else "real-valued"
        print(f"propscope: note: the model has no loss of its own; the data's {kind} labels y take "
              f"{session.loss_name} (--loss NAME for another, --loss none for forward only)", file=sys.stderr)
    if session.target_reshaped is not None:
        labels, output = session.target_reshaped
        print(f"propscope: note: the labels y {fmt_shape(labels)} are read in the output's shape {fmt_shape(output)}; "
              f"torch's {session.loss_name} loss given the two as they are would broadcast them to "
              f"{fmt_shape(tuple(np.broadcast_shapes(labels, output)))} (and warn): a training script that does so "
              "computes another loss", file=sys.stderr)
    note = session.model.outputs_note
    if note and session.loss_name is not None and getattr(args, "output", None) is None:
        print(f"propscope: note: {note} (--output NAME picks another)", file=sys.stderr)
    pred = session.prediction_node.shape
    if session.loss_name == "cross_entropy" and len(pred) == 3 and pred[2] > pred[1]:  # (batch, tokens, vocabulary)?
        print(f"propscope: note: cross-entropy takes the classes on axis 1, as torch's does: {fmt_shape(pred)} is "
              f"read as {pred[1]} classes at each of {pred[2]} positions; for a language model's (batch, tokens, "
              "vocabulary) logits, --per-token reads a row per token (as do (batch, tokens) labels in --data)",
              file=sys.stderr)
    elif session.prediction_node.meta.get("per_token") and not getattr(args, "per_token", False):
        print(f"propscope: note: the data's (batch, tokens) labels read the logits "
              f"{fmt_shape(session.prediction_node.inputs[0].shape)} a row per token, as {fmt_shape(pred)}",
              file=sys.stderr)
    return session


def _nonfinite_parameters(parameters: dict[str, np.ndarray]) -> str:
    """One line naming the parameters whose own values hold NaN or ±inf ("" for none): where a blow-up is already in
    the weights, before any step."""
    from .debugger.grad_flow import counts_text, nonfinite_counts

    found = []
    for name, value in parameters.items():
        counts = nonfinite_counts(np.asarray(value))
        if any(counts):
            found.append(f"{name} ({counts_text(*counts)})")
    if not found:
        return ""
    shown = ", ".join(found[:4]) + (f", … {len(found) - 4} more" if len(found) > 4 else "")
    return f"{len(found)} parameter{'s' if len(found) != 1 else ''} hold{'s' if len(found) == 1 else ''} " \
           f"non-finite values before any step: {shown}"


# -- commands ------------------------------------------------------------------------------
def cmd_examples(args: argparse.Namespace) -> int:
    from .graph.examples import EXAMPLES

    width = max(len(n) for n in EXAMPLES)
    for name, ex in EXAMPLES.items():
        print(f"{name:<{width}}  {ex.summary}")
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    """The op catalog, one line per op; with --coverage, how much of Core ATen and ONNX the readers map."""
    from .graph.ops import CATALOG

    if not args.coverage:
        rows = [op for op in CATALOG.values() if not op.is_leaf]
        width = max(len(op.name) for op in rows)
        for op in sorted(rows, key=lambda o: (o.category, o.name)):
            print(f"{op.name:<{width}}  {op.category:<10}  {op.formula}")
        print(f"{len(rows)} ops")
        return 0
    from .graph.readers import coverage

    reports = []
    try:
        reports.append(coverage.report(coverage.aten_coverage(), verbose=args.verbose))
    except ImportError:
        reports.append("Core ATen: needs PyTorch to list its core-tagged ops (pip install torch)")
    try:
        reports.append(coverage.report(coverage.onnx_coverage(), verbose=args.verbose))
    except ImportError:
        reports.append("ONNX: needs the onnx package to list its operators (pip install onnx)")
    print("\n".join(reports))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .graph.model import output_name
    from .graph.readers import load_target, state_dict

    path = Path(args.target)
    if args.arch is None and state_dict.match(path) and path.is_file():
        return _inspect_weights(path, args.json)
    model = load_target(args.target, seed=args.seed, arch=args.arch)
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
        "unsupported_ops": model.unsupported_ops,
        "warnings": model.warnings,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{g.name}: {model.description}")
    print(f"  {len(g)} nodes, {len(g.ops)} ops, {info['parameter_count']} parameters, default loss: {model.loss}")
    print("  ops:        " + ", ".join(f"{k} ×{v}" for k, v in ops.items()))
    for warning in model.warnings:
        print(f"  warning:    {warning}")
    for title, group in (("inputs", g.inputs), ("parameters", g.parameters), ("outputs", g.outputs)):
        print(f"  {title}:")
        for n in group:
            print(f"    {output_name(n) if title == 'outputs' else n.name:<16} {n.shape}")
    return 0


def _inspect_weights(path: Path, as_json: bool) -> int:
    """A state dict or checkpoint without an architecture: its tensors, each with its numbers and its NaN count."""
    from .debugger.weight_stats import text, weight_rows
    from .graph.readers import state_dict

    checkpoint = state_dict.read_checkpoint(path)
    rows = weight_rows(checkpoint.tensors, checkpoint.stored)
    if as_json:
        print(json.dumps({"name": path.name, "tensors": [r.as_dict() for r in rows],
                          "warnings": [checkpoint.note] if checkpoint.note else []}, indent=2))
        return 0
    from .graph.readers import torchscript, ultralytics_checkpoint

    # a TorchScript archive's graph opens from its code, a YOLO checkpoint's from its config: say so, then list weights
    if torchscript.is_archive(path):
        title = f"{path.name}: a TorchScript archive, whose graph opens with `propscope open {path.name}`; its weights"
    elif ultralytics_checkpoint.match(path):
        title = (f"{path.name}: an Ultralytics YOLO checkpoint, whose network opens with `propscope open {path.name}` "
                 "(built by ultralytics from its config); its weights")
    else:
        title = f"{path.name}: weights only (--arch names the architecture they fill)"
    print(text(rows, title))
    if checkpoint.note:
        print(f"  warning: {checkpoint.note}")
    return 0


def _nonfinite_inputs(session: Any, node: Any, phase: str) -> str:
    """", from its input W (1 NaN)": the inputs of the first non-finite step that were already non-finite (a NaN weight
    is where the trouble started), or, on the backward pass, a non-finite gradient arriving from above."""
    from .debugger.grad_flow import counts_text, nonfinite_counts

    said = []
    for a in node.inputs:
        value = session.value(a.name)
        counts = (0, 0) if value is None else nonfinite_counts(np.asarray(value))
        if any(counts):
            said.append(f"{a.name} ({counts_text(*counts)})")
    if phase != "forward":
        upstream = session.grad(node.name)
        if upstream is not None and not np.isfinite(upstream).all():
            said.append("its gradient from above")
    return f", from non-finite input {', '.join(said[:3])}" if said else ""


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


def _numpy_or_none(session: Any, value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(session.backend.to_numpy(value))


def cmd_trace(args: argparse.Namespace) -> int:
    from .debugger.metrics import METRICS, accuracy
    from .debugger.nonfinite import cause

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
            score = accuracy(pred, s.batch["y"], s.loss_name) if metric == "accuracy" else \
                METRICS[metric](pred, s.batch["y"])  # accuracy takes the classes where the loss does
            print(f"  {metric} = {score:.10g}")
    bad = s.trace.first_nonfinite
    if bad is not None:
        index, node = bad
        phase = s.steps[index].phase
        where = f" in {node.module}" if node.module else ""
        why = cause(node, lambda name: _numpy_or_none(s, s.value(name)), phase, s.backend.dtype, carried=False)
        print(f"  warning: first non-finite value at {phase} step {index + 1}: {node.op.name} {node.name}{where}"
              f"{': ' + why if why else _nonfinite_inputs(s, node, phase)}")
    print(f"  wrote {len(arrays)} arrays to {out}")
    return 0


def _count(text: str) -> int:
    """A count: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a whole number >= 0, got {text}")
    return value


def _tolerance(text: str) -> float:
    """A tolerance: a finite number >= 0 (NaN would make every comparison pass and fail at once)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the tolerance must be a number such as 1e-7, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"the tolerance must be a finite number >= 0, got {text}")
    return value


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from .debugger.gradcheck import default_samples, gradcheck
    from .debugger.memory import gradcheck_estimate, leaf_elements

    s = _open(args, dtype="float64")
    _check_memory(gradcheck_estimate(s.trace.estimate(), leaf_elements(s.graph)), s)
    samples = args.samples if args.samples is not None else default_samples(s)
    samples = None if samples == 0 else samples
    rows = gradcheck(s, samples=samples, progress=_progress_line if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    failed = [r for r in rows if not r.ok(args.tol)]
    tiny = [r for r in rows if r.relative_error > args.tol and r.ok(args.tol)]
    worst = max((r.relative_error for r in failed or rows if r not in tiny), default=0.0)
    width = max([len(r.name) for r in rows] + [4])
    sampled = "" if samples is None else f", {samples} entries of each tensor (--samples 0 checks all)"
    print(f"{s.name}: gradient check in float64 on {s.backend.name}, tolerance {args.tol:g}{sampled}")
    for r in rows:
        flag = "FAIL" if r in failed else "ok, to rounding" if r in tiny else "ok"
        why = r.nonfinite_text()
        print(f"  {r.name:<{width}}  {r.kind:<9}  rel {r.relative_error:.2e}  abs {r.max_abs_error:.2e}  {flag}"
              f"{': ' + why if why else ''}")
    below = (f"; {len(tiny)} agree only to the loss's own rounding over the step (|error| ≤ "
             f"{max(r.resolution for r in tiny):.1e}): too small for differences to check further") if tiny else ""
    if failed:
        print(f"propscope: gradient check failed: worst relative error {worst:.2e} > {args.tol:g}{below}",
              file=sys.stderr)
        return 1
    print(f"  all {len(rows)} gradients agree (worst relative error {worst:.2e}{below})")
    return 0


def _check_memory(estimate: Any, session: Any) -> None:
    """Refuse a pass whose values and gradients would not fit in the memory budget, before it runs (memory.py)."""
    estimate.check(session.trace.budget.limit)


def _progress_line(done: int, total: int, name: str) -> None:
    """Where a long gradient check is, on one line of a terminal."""
    print(f"\r\033[Kchecking {name} ({done + 1} of {total})", end="", file=sys.stderr, flush=True)


def cmd_grads(args: argparse.Namespace) -> int:
    """Every parameter's gradient after one backward pass, in forward order, or with --activations ∂L/∂h at every
    module output; vanishing, exploding and non-finite ones flagged (debugger/grad_flow.py). With --units, why:
    the dead and saturated units of every activation function (debugger/unit_health.py)."""
    from .debugger.grad_flow import ActivationGradientFlow, GradientFlow, activation_flow, gradient_flow
    from .debugger.unit_health import UnitHealth, unit_health

    if args.activations and args.units:
        raise PropscopeError("--activations or --units, not both")
    s = _open(args)
    flow: GradientFlow | ActivationGradientFlow | UnitHealth
    if args.units:
        flow = unit_health(s)
        print(f"{s.name}: dead and saturated units after the forward pass on {s.backend.name}/{s.backend.dtype}")
    else:
        if args.activations:
            flow = activation_flow(s)
            what = f"∂L/∂h at the module outputs of level {flow.depth}"
        else:
            flow = gradient_flow(s)
            what = "gradient flow"
        print(f"{s.name}: {what} on {s.backend.name}/{s.backend.dtype}, loss {s.loss_name} = {flow.loss:.6g}")
    print(flow.text(flagged_only=args.flagged))
    print(flow.summary())
    tied: dict[str, list[str]] = {}
    for alias, kept in s.model.aliases.items():
        tied.setdefault(kept, []).append(alias)
    for kept, others in tied.items():  # one tensor under several names (a tied embedding and head): listed once
        print(f"  {kept} is also {', '.join(others)} (tied: one tensor, its gradient summed over every use)")
    if args.csv:
        import csv

        _writable(args.csv, "--csv")
        with open(args.csv, "w", newline="", encoding="utf-8") as fh:
            every = flow.as_dicts()
            rows = [r for r in every if r["flag"]] if args.flagged else every  # as the table printed above
            writer = csv.DictWriter(fh, fieldnames=list(every[0]) if every else [
                "module" if args.activations or args.units else "parameter"])
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    return 1 if args.strict and flow.flagged else 0


def _largest_difference(result: Any) -> str:
    """The largest difference as the tolerance measures it: beside the size of the numbers where they exceed 1."""
    worst = result.worst(1)
    if not worst or worst[0].worst == 0:
        return "no difference at all"
    d = worst[0]
    scale = d.grad_scale if d.grad_diff >= d.value_diff or np.isnan(d.value_diff) else d.value_scale
    if np.isnan(scale) or scale <= 1:
        return f"largest difference {d.worst:.2e}, at {d.name}"
    return (f"largest difference {d.worst:.2e}, at {d.name}, where the numbers reach {scale:.2e}: "
            f"{d.worst / scale:.1e} of them")


def cmd_compare(args: argparse.Namespace) -> int:
    from .backends import get_backend
    from .debugger import open_session
    from .debugger.compare import compare_backends

    s = _noted(open_session(args.target, dtype=args.dtype, seed=args.seed, data=args.data, loss=args.loss,
                            arch=args.arch, output=args.output, per_token=args.per_token,
                            normalize=args.normalize, label=args.label), args)
    _check_memory(s.trace.estimate(backends=2), s)  # both passes, before the first of them runs
    s.run_to_end()
    result = compare_backends(s, get_backend("torch", args.dtype, args.device), tolerance=args.tol)
    print(f"{s.name}: {result.reference} vs {result.other}, {result.steps} steps, "
          f"tolerance {result.tolerance:g} (absolute up to magnitude 1, relative to the values' size beyond)")
    width = max([len(d.name) for d in result.nodes] + [4])
    print(f"  {'node':<{width}}  {'op':<13}  {'value diff':>10}  {'grad diff':>10}")
    for d in result.worst(args.top):
        values = "  ".join(f"{'-' if np.isnan(x) else f'{x:.2e}':>10}" for x in (d.value_diff, d.grad_diff))
        print(f"  {d.name:<{width}}  {d.op:<13}  {values}  {'ok' if result.node_ok(d) else 'FAIL'}")
    if not result.passed:
        names = ", ".join(d.name for d in result.failures)
        print(f"propscope: backends differ beyond {result.tolerance:g} at: {names}", file=sys.stderr)
        if result.explanation is not None:
            print(f"  note: {result.explanation}")
        return 1
    forward = "" if s.loss_name is not None else "; forward values only: no loss, so no gradients (--loss NAME)"
    print(f"  all {len(result.nodes)} nodes agree ({_largest_difference(result)}){forward}")
    return 0


def _train_data(args: argparse.Namespace) -> tuple[Any, Any]:
    """The training data and the test data (None where there is none) that --data and --test-data name."""
    from .graph.datasets import GENERATORS, DataError, is_image, load_data, make_dataset

    for option, path in (("--data", args.data), ("--test-data", args.test_data)):
        if path is not None and is_image(path):
            raise DataError(f"{option} {path}: train takes an .npz or .csv with labels, or a data set; a photo is one "
                            "sample without a label (open, grads or trace take one)")
    data = test = None
    if args.data is not None and not Path(args.data).exists() and args.data in GENERATORS:
        ds = make_dataset(args.data, n=200, noise=0.1, seed=args.seed, test_fraction=args.test_fraction)
        data, test = ds.batch(), ds.test_batch()
    elif args.test_fraction:
        raise DataError("--test-fraction splits a built-in data set (--data moons, ...); for a file use --test-data")
    elif args.data is not None:
        data = load_data(args.data)
        if "x_test" in data and "y_test" in data:  # an .npz that carries its own split
            test = {"x": data.pop("x_test"), "y": data.pop("y_test")}
    if args.test_data is not None:
        test = load_data(args.test_data)
    return data, test


class _Progress:
    """One line per update: rewritten in place on a terminal (at most 10 a second), every 10% otherwise."""

    def __init__(self, total: int, stream: Any = None, per_sample: tuple[int, int] | None = None) -> None:
        self.total = total
        self.per_sample = per_sample  # (train, test) sample counts of a summed loss: shown per sample
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = max(1, total // 10)
        self.next_time = 0.0
        self.written = False

    def update(self, record: Any) -> None:
        import time

        done = record.epoch + 1
        if self.tty:
            now = time.monotonic()
            if now < self.next_time and done < self.total:
                return
            self.next_time = now + 0.1
        elif done % self.every and done != self.total:
            return
        n_train, n_test = self.per_sample or (1, 1)
        suffix = "/sample" if self.per_sample else ""
        parts = [f"epoch {done}/{self.total}", f"loss{suffix} {record.loss / n_train:.6g}"]
        if record.test_loss is not None:
            parts.append(f"test_loss{suffix} {record.test_loss / n_test:.6g}")
        parts += [f"{k} {v:.6g}" for k, v in record.metrics.items()]
        line = "  ".join(parts)
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.stream.flush()
        self.written = True

    def close(self) -> None:
        if self.tty and self.written:
            self.stream.write("\n")
            self.stream.flush()


def _per_sample(trainer: Any) -> tuple[int, int] | None:
    """(train, test) counts where a summed loss is compared with a test loss: they are then shown per sample (per
    row of the target), since a sum over 160 samples and one over 40 are not on one scale. None otherwise."""
    from .debugger.trainer import summed_loss_sizes

    sizes = summed_loss_sizes(trainer)
    return None if sizes is None else (max(1, sizes[0]), max(1, sizes[1]))


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from .backends.optimizers import make_optimizer
    from .debugger import open_session
    from .debugger.trainer import Trainer, TrainingError, run_health
    from .graph.model import TrainingDefaults
    from .graph.readers import save_model

    hparams = {
        "momentum": args.momentum, "weight_decay": args.weight_decay, "eps": args.eps, "alpha": args.alpha,
        "betas": tuple(args.betas) if args.betas else None,
        "nesterov": args.nesterov or None, "amsgrad": args.amsgrad or None, "centered": args.centered or None,
    }
    hparams = {k: v for k, v in hparams.items() if v is not None}
    # the settings a user typed are checked before anything is loaded or run
    if args.optimizer is not None:
        make_optimizer(args.optimizer, [], lr=args.lr, **hparams)
    else:  # the example's optimizer is known only once it is loaded; the learning rate can be checked now
        make_optimizer("sgd", [], lr=args.lr)
    for name in ("epochs", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for option, path in (("--history", args.history), ("--out", args.out)):
        if path:
            _writable(path, option)
    data, test = _train_data(args)
    s = _noted(open_session(args.target, backend=args.backend, dtype=args.dtype, seed=args.seed, data=data,
                            loss=args.loss, device=args.device, arch=args.arch, output=args.output,
                            per_token=args.per_token), args)
    s.check_runnable()
    trainer = Trainer(s, args.epochs, args.optimizer, args.lr, args.batch_size, test, seed=args.seed,
                      snapshots=_snapshot_settings(args), **hparams)
    _check_memory(s.training_memory(trainer.batch_size), s)
    opt = trainer.optimizer
    print(f"{s.name}: {trainer.epochs} epochs of {opt.name} (lr {opt.hparams['lr']:g}) on {trainer.n} samples"
          f"{f' in batches of {trainer.batch_size}' if trainer.batch_size else ''}, {s.backend.name}/"
          f"{s.backend.dtype}, loss {s.loss_name}")
    if data is None and s.target_drawn:  # a model file without data: its declared batch, a target drawn at random
        print(f"  no --data: training on a generated batch of {trainer.n} sample{'s' if trainer.n != 1 else ''} of "
              "the declared shape, its target drawn at random (it shows the optimizer at work, not learning); "
              "--data D.npz gives yours", file=sys.stderr)
    per_sample = _per_sample(trainer)
    if per_sample:
        print(f"  {s.loss_name} adds over the samples ({per_sample[0]} train, {per_sample[1]} test): "
              "train and test losses are compared per sample")
    progress = _Progress(trainer.epochs, per_sample=per_sample)
    s.loss_appended.connect(progress.update)
    start = time.perf_counter()
    try:
        history = trainer.run()
    finally:
        progress.close()
        s.loss_appended.disconnect(progress.update)
    seconds = time.perf_counter() - start
    if len(history):
        first, last = history[0], history[-1]
        print(f"  {len(history)} epochs in {seconds:.2f} s")
        print(f"  {'loss':<10} {first.loss:.6g} -> {last.loss:.6g}")
        if last.test_loss is not None and first.test_loss is not None:
            n_train, n_test = per_sample or (1, 1)
            if per_sample:
                print(f"  {'loss/sample':<10} {first.loss / n_train:.6g} -> {last.loss / n_train:.6g}")
            name = "test/sample" if per_sample else "test_loss"
            print(f"  {name:<10} {first.test_loss / n_test:.6g} -> {last.test_loss / n_test:.6g}")
        for k, v in last.metrics.items():
            print(f"  {k:<10} {first.metrics[k]:.6g} -> {v:.6g}")
        health = run_health(history.loss, history.grad_norms)
        if health:
            print(f"propscope: warning: {health}", file=sys.stderr)
    if trainer.recorder is not None and s.snapshots:
        print(f"  {len(s.snapshots)} snapshots, epochs {s.snapshots.epochs[0]} to {s.snapshots.epochs[-1]} "
              f"({s.snapshots.nbytes / 2**20:.2f} MiB)")
    if history.nonfinite is None and trainer.n <= 8 and s.prediction_node.shape and \
            int(np.prod(s.prediction_node.shape)) <= 64:  # not an ImageNet head's 1,000 logits
        s.seek(s.n_forward)  # the tutorial ends by printing what the trained network predicts
        pred = np.asarray(s.value(s.prediction_node.name))
        shown = pred.reshape(-1) if pred.size == trainer.n else pred
        print("  predictions: " + np.array2string(shown, precision=6, separator=" "))
    if args.history:
        history.to_csv(args.history)
        print(f"  wrote {len(history)} epochs to {args.history}")
    if args.out:
        used = TrainingDefaults(opt.name, opt.hparams["lr"], trainer.epochs, trainer.batch_size)
        # as File ▸ Save writes it: the loss (one taken from the labels too), the data and the recorded epochs
        save_model(s.saved_model(training=used), args.out)
        what = "the model, on the parameters that diverge," if history.nonfinite else "the trained model"
        print(f"  wrote {what} to {args.out}")
    if history.nonfinite is not None:
        print(f"propscope: {history.nonfinite.message}", file=sys.stderr)
        return 1
    return 0


def _snapshot_settings(args: argparse.Namespace) -> Any:
    """train's --snapshots, --snapshot-trace and --snapshot-budget as SnapshotSettings (None: not asked for)."""
    from .debugger.snapshots import DEFAULT_BUDGET_BYTES, SnapshotSettings
    from .graph.readers._budget import parse_size

    if args.snapshots is None:
        if args.snapshot_trace or args.snapshot_budget:
            raise PropscopeError("--snapshot-trace and --snapshot-budget need --snapshots N")
        return None
    try:
        budget = parse_size(args.snapshot_budget) if args.snapshot_budget else DEFAULT_BUDGET_BYTES
    except ValueError as exc:
        raise PropscopeError(f"--snapshot-budget: {exc}") from None
    return SnapshotSettings(count=args.snapshots, trace=args.snapshot_trace, budget_bytes=budget)


def cmd_diff(args: argparse.Namespace) -> int:
    """Per-parameter relative change of B against A (and, with --trace, every node's value and gradient)."""
    from .debugger.diff import diff

    result = diff(args.a, args.b, trace=args.trace, data=args.data, arch=args.arch, seed=args.seed)
    if args.json:
        print(result.to_json())
        return 0
    params = result.parameters
    print(f"{result.label_a} vs {result.label_b}: {len(params)} parameters, "
          f"{len(result.changed('params'))} changed (relative change |A-B| / max(|A|, |B|))")
    rows = result.rows if args.trace else params
    width = max([len(r.name) for r in rows] + [4])
    head = f"  {'node':<{width}}  {'op':<10}  {'param':>10}"
    print(head + (f"  {'value':>10}  {'grad':>10}" if args.trace else "") + "  status")
    for r in rows:
        cells = [r.param_change] + ([r.value_change, r.grad_change] if args.trace else [])
        text = "  ".join(f"{_change_text(r, c):>10}" for c in cells)
        renamed = f" (B: {r.name_b})" if r.name_b else ""
        print(f"  {r.name:<{width}}  {r.op[:10]:<10}  {text}  {r.status}{renamed}")
    return 0


def _change_text(row: Any, change: float) -> str:
    if row.status in ("only in A", "only in B"):
        return "-"
    return "-" if math.isnan(change) else "0" if change == 0 else f"{change:.3e}"


def cmd_debug(args: argparse.Namespace) -> int:
    from .debugger.repl import DebuggerShell

    DebuggerShell(_open(args)).cmdloop()
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    """The desktop app; Qt is imported here only, so the rest of the CLI runs without it."""
    session = _open(args)
    from .gui.system_libs import choose_platform

    problem = choose_platform(screenshot=bool(args.screenshot))  # before Qt loads: it would abort instead
    if problem:
        print(f"propscope: error: {problem}", file=sys.stderr)
        return 2
    from .gui.app import parse_size, run

    try:
        size = parse_size(args.size) if args.size else None
    except ValueError as exc:
        print(f"propscope: error: {exc}", file=sys.stderr)
        return 2
    if args.step < 0 or args.step > len(session.steps):
        print(f"propscope: error: --step {args.step} is outside 0..{len(session.steps)}", file=sys.stderr)
        return 2
    if args.train is not None and args.train < 1:
        print(f"propscope: error: --train needs at least 1 epoch, got {args.train}", file=sys.stderr)
        return 2
    return run(session, step=args.step, projector=args.projector, size=size, screenshot=args.screenshot,
               seed=args.seed, train=args.train or 0, dataset=args.dataset, colour_by=args.colour_by,
               message=_photo_message(session, args))


def _photo_message(session: Any, args: argparse.Namespace) -> tuple[str, str]:
    """What the window's status bar says of a photo given as --data (how it became the input, the class drawn or
    given), in brief, and whole for its tooltip: the notes on stderr are not where an app's user looks."""
    from .graph.datasets import is_image

    if args.data is None or not is_image(args.data):
        return "", ""
    brief, whole = session.photo_notes(args.data, session.target_drawn, args.label,
                                       yours="--label C or File ▸ Load data's class")
    return f"Data from {Path(args.data).name}: " + "; ".join(brief), "\n".join(whole)


# -- lessons and export (issue 17): the work lives in debugger/lessons.py and gui/export/ -----------
def cmd_lessons(args: argparse.Namespace) -> int:
    from .debugger.lessons import builtin_lessons

    lessons = builtin_lessons()
    width = max(map(len, lessons))
    for name, title in lessons.items():
        print(f"{name:<{width}}  {title}")
    return 0


def cmd_lesson(args: argparse.Namespace) -> int:
    """The app on a lesson; `--check` plays it headless and reports every number it states."""
    from .debugger.lessons import LessonPlayer, load_lesson, open_lesson_session

    lesson = load_lesson(args.lesson)
    session = open_lesson_session(lesson)
    if args.check:
        player = LessonPlayer(lesson, session)
        failures: list[str] = []
        player.failed.connect(failures.append)
        results = player.run_to_end()
        for r in results:
            print(r.text())
        for line in failures:
            print(f"propscope: {line}", file=sys.stderr)
        print(f"{lesson.name}: {len(lesson.blocks)} blocks, {sum(r.ok for r in results)}/{len(results)} checks hold")
        return 0 if all(r.ok for r in results) and not failures else 1
    from .gui.system_libs import choose_platform

    problem = choose_platform(screenshot=bool(args.screenshot))
    if problem:
        raise PropscopeError(problem)
    from .gui.app import parse_size
    from .gui.lessons import run_lesson

    try:
        size = parse_size(args.size) if args.size else None
    except ValueError as exc:
        raise PropscopeError(str(exc)) from None
    return run_lesson(lesson, session, projector=args.projector, size=size, screenshot=args.screenshot,
                      presses=args.press)


def cmd_export(args: argparse.Namespace) -> int:
    """Frames of the pass (.gif, .mp4, a folder), the graph (.svg, .png) or the formula (.tex, --formula .png)."""
    session = _open(args)
    if Path(args.out).suffix:  # a folder of frames is made when missing
        _writable(args.out, "--out")
    from .gui.system_libs import choose_platform

    choose_platform(screenshot=True)  # pictures need no screen: offscreen when there is none
    from .gui.app import application, parse_size
    from .gui.export import ExportOptions, export, parse_steps, terminal_progress

    try:
        size = parse_size(args.size)
    except ValueError as exc:
        raise PropscopeError(f"--size: {exc}") from None
    first, last = parse_steps(args.steps) if args.steps else (0, None)
    if args.step is not None and not 0 <= args.step <= len(session.steps):
        raise PropscopeError(f"--step {args.step} is outside 0..{len(session.steps)}")
    application()
    options = ExportOptions(size, args.projector, first, last, args.pace, whole=args.whole)
    written = export(session, args.out, options, formula=args.formula, cursor=args.step,
                     progress=terminal_progress())
    print(f"wrote {written}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .debugger.gradcheck import AUTO_SAMPLE_ABOVE, AUTO_SAMPLES  # the app's rule too, said in --help

    parser = CommandParser(
        prog="propscope",
        description="Step through the forward and backward pass of a neural network, one op at a time.",
        epilog="With no command, the desktop app opens on the xor lesson.",
    )
    parser.add_argument("--version", action="version", version=f"propscope {_version()}")
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("examples", help="list the built-in examples")
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser("ops", help="the op catalog; --coverage: Core ATen and ONNX ops mapped, folded, unsupported")
    p.add_argument("--coverage", action="store_true", help="how many core ATen and ONNX ops the readers map")
    p.add_argument("--verbose", "-v", action="store_true", help="with --coverage: name every op not mapped")
    p.set_defaults(func=cmd_ops)

    p = sub.add_parser("inspect", help="nodes by op, parameters, inputs and outputs; a state dict's tensors with "
                       "their numbers and NaN counts", epilog=EPILOG)
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--arch", metavar="A", help=ARCH_HELP)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("trace", help="one forward and backward pass, every value and gradient saved", epilog=EPILOG)
    _session_args(p)
    p.add_argument("--out", required=True, metavar="T.npz", help="where to write the trace")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("gradcheck", help="compare gradients with finite differences (float64)", epilog=EPILOG)
    _session_args(p)
    p.add_argument("--tol", type=_tolerance, default=1e-7, help="largest relative error allowed (default 1e-7)")
    p.add_argument("--samples", type=_count, metavar="N",
                   help=f"check N entries of each tensor, half where the gradient is largest, half at random "
                        f"(0: all; default all up to {AUTO_SAMPLE_ABOVE:,} parameter and input entries, "
                        f"{AUTO_SAMPLES} above)")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("grads", help="every parameter's (or module output's) gradient in forward order; vanishing, "
                       "exploding, NaN flagged",
                       epilog=EPILOG)
    _session_args(p)
    p.add_argument("--activations", action="store_true",
                   help="∂L/∂h at every module output (the gradient through depth) instead of the parameters")
    p.add_argument("--units", action="store_true",
                   help="every activation function's output after the forward pass: the share of dead units (a "
                        "ReLU's 0 on every sample) and saturated ones (a sigmoid or tanh at its flat ends)")
    p.add_argument("--flagged", action="store_true", help="list (and write to --csv) only the flagged rows")
    p.add_argument("--csv", metavar="PATH", help="also write the table as CSV")
    p.add_argument("--strict", action="store_true", help="exit with 1 when any row is flagged (for CI)")
    p.set_defaults(func=cmd_grads)

    p = sub.add_parser("compare", help="the same pass on NumPy and on torch, node by node", epilog=EPILOG)
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("--arch", metavar="A", help=ARCH_HELP)
    p.add_argument("--dtype", choices=DTYPES, default="float64", help="float precision (default float64)")
    p.add_argument("--seed", type=int, default=0, help="seed for the example's initial weights (default 0)")
    p.add_argument("--data", metavar="D", help=".npz with `x` (or arrays named after the inputs) and `y`; or an image")
    p.add_argument("--normalize", metavar="N", help=f"an image's pixels / 255: {NORMALIZE_CHOICES} (default model)")
    p.add_argument("--label", type=int, metavar="C", help="an image's class for cross-entropy (default: drawn)")
    p.add_argument("--loss", metavar="NAME", help="mse, sse, bce, cross_entropy, or none (forward only)")
    p.add_argument("--output", metavar="NAME", help=OUTPUT_HELP)
    p.add_argument("--per-token", action="store_true", help=PER_TOKEN_HELP)
    p.add_argument("--device", default="cpu", help="where torch runs: cpu, cuda or cuda:N")
    p.add_argument("--tol", type=_tolerance, help="largest difference allowed (default 1e-10 float64, 1e-5 float32)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="how many worst nodes to list (default 10)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="train with sgd, momentum, rmsprop, adam or adamw", epilog=EPILOG)
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("--arch", metavar="A", help=ARCH_HELP)
    p.add_argument("--optimizer", metavar="NAME", help="sgd, momentum, rmsprop, adam or adamw (default: the example's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the example's)")
    p.add_argument("--epochs", type=int, help="passes over the data (default: the example's)")
    p.add_argument("--batch-size", type=int, metavar="N", help="shuffled mini-batches of N (default: full batch)")
    p.add_argument("--seed", type=int, default=0, help="seed for the initial weights and the shuffling (default 0)")
    p.add_argument("--dtype", choices=DTYPES, default="float64", help="float precision (default float64, as NumPy)")
    p.add_argument("--data", metavar="D", help="a .npz or .csv file, or a data set: xor, circles, moons, spiral, "
                   "blobs, sine (200 points, noise 0.1)")
    p.add_argument("--test-data", metavar="T", help="a .npz or .csv file scored after every epoch")
    p.add_argument("--test-fraction", type=float, default=0.0, metavar="F", help="hold out this share of a data set")
    p.add_argument("--loss", metavar="NAME", help="mse, sse, bce or cross_entropy (default: the example's)")
    p.add_argument("--output", metavar="NAME", help=OUTPUT_HELP)
    p.add_argument("--per-token", action="store_true", help=PER_TOKEN_HELP)
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="numpy (hand-written) or torch (autograd)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (torch backend)")
    p.add_argument("--history", metavar="H.csv", help="write epoch, loss, test_loss and the metrics per epoch")
    p.add_argument("--out", metavar="MODEL", help="write the trained model (propscope format)")
    p.add_argument("--snapshots", type=int, metavar="N",
                   help="record the parameters at N epochs (every early one, later ones thinned) and save them with "
                   "--out, for the timeline and `propscope diff FILE@EPOCH`")
    p.add_argument("--snapshot-trace", action="store_true",
                   help="with each snapshot also every value and gradient of the batch")
    p.add_argument("--snapshot-budget", metavar="SIZE", help="memory for snapshots, e.g. 512M (default 256M)")
    hp = p.add_argument_group("optimizer settings (PyTorch's names and defaults)")
    hp.add_argument("--momentum", type=float, help="sgd, momentum, rmsprop")
    hp.add_argument("--weight-decay", type=float, help="L2 penalty; decoupled in adamw (default 0.01 there)")
    hp.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"), help="adam, adamw (default 0.9 0.999)")
    hp.add_argument("--eps", type=float, help="rmsprop, adam, adamw (default 1e-8)")
    hp.add_argument("--alpha", type=float, help="rmsprop smoothing (default 0.99)")
    hp.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd, momentum)")
    hp.add_argument("--amsgrad", action="store_true", help="adam, adamw")
    hp.add_argument("--centered", action="store_true", help="rmsprop")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("diff", help="how two models, checkpoints or epochs differ, parameter by parameter",
                       epilog="A and B are example names or model files (.propscope, .pt2, .onnx, a state dict with "
                       "--arch); FILE@EPOCH is a snapshot that `propscope train --snapshots` recorded in FILE.")
    p.add_argument("a", metavar="A", help="the first model")
    p.add_argument("b", metavar="B", help="the second model")
    p.add_argument("--trace", action="store_true", help="also every node's value and gradient on one batch")
    p.add_argument("--data", metavar="D", help="the batch for --trace (default: A's own)")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--arch", metavar="A", help=ARCH_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed for an example's initial weights (default 0)")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("debug", help="a pdb-style debugger in the terminal", epilog=EPILOG)
    _session_args(p)
    p.set_defaults(func=cmd_debug)

    p = sub.add_parser("open", help="the desktop app on an example or a model file", epilog=EPILOG)
    _session_args(p)
    p.add_argument("--step", type=int, default=0, metavar="N", help="take N steps before showing (default 0)")
    p.add_argument("--projector", action="store_true", help="start in projector mode (big type, high contrast)")
    p.add_argument("--size", metavar="WxH", help="window size in pixels, e.g. 1280x800")
    p.add_argument("--screenshot", metavar="FILE.png", help="save the window as a PNG and exit (works headless)")
    p.add_argument("--train", type=int, metavar="EPOCHS", help="train that many epochs in the app first")
    from .graph.datasets import GENERATORS

    p.add_argument("--dataset", choices=list(GENERATORS), metavar="NAME",
                   help=f"step (and, with --train, train) on a generated data set, 20%% held out for testing "
                   f"({', '.join(GENERATORS)})")
    p.add_argument("--colour-by", choices=["grad", "value", "nonfinite", "disagree"],
                   help="colour the nodes by a number, as View ▸ Colour nodes by (for screenshots)")
    p.set_defaults(func=cmd_open)

    p = sub.add_parser("lessons", help="list the built-in lessons (the tutorial's parts 1 to 10)")
    p.set_defaults(func=cmd_lessons)

    p = sub.add_parser("lesson", help="the desktop app on a narrated lesson (a built-in name, a number, or a file)")
    p.add_argument("lesson", metavar="NAME_OR_FILE", help="e.g. part-07-xor, 7, or my-lesson.md")
    p.add_argument("--projector", action="store_true", help="start in projector mode (big type, high contrast)")
    p.add_argument("--size", metavar="WxH", help="window size in pixels, e.g. 1280x720")
    p.add_argument("--screenshot", metavar="FILE.png", help="save the window as a PNG and exit (works headless)")
    p.add_argument("--press", type=int, default=0, metavar="N", help="press Next N times before showing")
    p.add_argument("--check", action="store_true", help="no window: play the lesson and check every number it states")
    p.set_defaults(func=cmd_lesson)

    p = sub.add_parser("export", help="the pass as .gif/.mp4/PNG frames, the graph as .svg/.png, the formula as .tex",
                       epilog=EPILOG + " OUT: .gif, .mp4 or a folder (the pass, one frame per step plus the start), "
                       ".svg or .png (the graph), .tex (the chain rule at --step).")
    _session_args(p)
    p.add_argument("--out", required=True, metavar="OUT", help="the file (or folder) to write")
    p.add_argument("--steps", metavar="A:B", help="only the pass after A steps to after B steps (default: all)")
    p.add_argument("--step", type=int, metavar="N", help="for the graph and the formula: after N steps")
    p.add_argument("--size", default="1280x720", metavar="WxH", help="frame size in pixels (default 1280x720)")
    p.add_argument("--projector", action="store_true", help="projector style: high contrast, thick lines, big type")
    p.add_argument("--whole", action="store_true",
                   help="the whole graph in every picture, however small (a graph too big to read whole otherwise "
                        "shows the part around the step)")
    p.add_argument("--pace", type=float, default=0.8, metavar="S", help="seconds per frame in .gif/.mp4 (default 0.8)")
    p.add_argument("--formula", action="store_true", help="with .png: the chain-rule formula at --step, not the graph")
    p.set_defaults(func=cmd_export)
    for command in sub.choices.values():
        _global_options(command, inherited=True)
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
    debug = bool(getattr(args, "debug", False))
    if not (args.func is cmd_open or (args.func is cmd_lesson and not args.check)):
        gc.enable()  # held off while the console script started (console.py); the app turns it on once shown
    try:
        _set_max_memory(getattr(args, "max_memory", None))
        return int(args.func(args))
    except PropscopeError as exc:
        print(f"propscope: error: {_error_line(args, exc)}", file=sys.stderr)
        if debug:
            import traceback

            traceback.print_exc()
        return 2
    except BrokenPipeError:  # `propscope ops | head`: the reader has what it wanted
        return 141
    except OSError as exc:
        print(f"propscope: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("propscope: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # MemoryError, RecursionError, a bug: one line; --debug shows the traceback
        if debug:
            raise
        print(f"propscope: error: {_error_line(args, exc)}", file=sys.stderr)
        return 2


def entry() -> None:
    """The `propscope` console script: `main`, then a quick exit.

    Tearing down the interpreter after the app has drawn a large graph (Qt's scene and widgets, every module
    and array) takes longer than a small file's whole open, and nothing in it matters to a user: the exit
    handlers (temporary folders, `weakref.finalize`) run and the streams are flushed first, Qt's settings are
    synced where they are written (gui/app.py), and the OS frees the rest. An uncaught exception takes the
    ordinary path."""
    import atexit
    import contextlib

    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`propscope ... | head`): nothing to say
            stream.flush()
    os._exit(code)


def _set_max_memory(text: str | None) -> None:
    from .graph.readers._budget import parse_size, set_max_memory

    try:
        set_max_memory(parse_size(text) if text else None)
    except ValueError as exc:
        raise PropscopeError(f"--max-memory: {exc}") from None


def _error_line(args: argparse.Namespace, exc: BaseException) -> str:
    """One line: `FILE: what is wrong` (at most ~200 characters, strings from the file shortened) when the
    command read a file; otherwise the error's own sentence."""
    from .debugger.memory import PassMemoryError
    from .graph.readers._failure import one_line

    target = str(getattr(args, "target", "") or "")
    is_file = bool(target) and Path(target).is_file()
    # a pass too big for the budget is not the file's fault; the line names the model and is read whole
    if isinstance(exc, PropscopeError) and (not is_file or isinstance(exc, PassMemoryError)):
        return " ".join(str(exc).split())
    return one_line(exc, target if is_file else None)


def _global_options(p: argparse.ArgumentParser, inherited: bool = False) -> None:
    """--debug and --max-memory, before or after the command (a subcommand's copy leaves the main one's
    value alone unless given)."""
    default: Any = argparse.SUPPRESS if inherited else None
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS if inherited else False,
                   help="on an error, show the traceback (for bug reports)")
    p.add_argument("--max-memory", metavar="SIZE", default=default,
                   help="memory budget for reading a model file, and for the values and gradients one pass keeps, "
                        "e.g. 2G (default: half of the available memory)")


if __name__ == "__main__":
    sys.exit(main())
