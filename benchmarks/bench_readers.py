"""Opening saved models: a small CNN's .pt2 (target ≤ 0.5 s warm) and generated 5,000-op models (≤ 1.5 s);
`open_session` on a 20,000-op ONNX chain (≤ 0.15 s warm, issue 14: opening faster than Netron).

Run by hand: `python benchmarks/bench_readers.py`. It times `open_model(path)` from the call to a ready
Model (graph built, weights loaded, shapes inferred), and `open_session` on top of it. The files are
made first in a temporary folder (the export itself is not timed). The app's first drawn graph is
timed by the GUI's own benchmark. A target applies to the warm `open_model`, or, marked `session`, to
the warm `open_session` (the whole open before any drawing: file, graph, schedule, generated batch).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _timed(fn, repeat: int) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:] or times), result


def small_cnn(folder: Path) -> Path:
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.conv2, self.fc = nn.Conv2d(8, 16, 3, padding=1), nn.Linear(16 * 7 * 7, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.max_pool2d(torch.relu(self.bn(self.conv1(x))), 2)
            x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
            return self.fc(torch.flatten(x, 1))

    path = folder / "cnn.pt2"
    torch.export.save(torch.export.export(CNN().eval(), (torch.randn(8, 1, 28, 28),)), str(path))
    return path


def deep_pt2(folder: Path, blocks: int) -> Path:
    """A residual MLP of `blocks` blocks of 5 ops (linear, relu, linear, add, tanh) through torch.export."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x + self.b(torch.relu(self.a(x))))

    model = nn.Sequential(*[Block() for _ in range(blocks)])
    path = folder / "deep.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(4, 8),)), str(path))
    return path


def deep_onnx(folder: Path, layers: int) -> Path:
    """`layers` × (Gemm, Relu) written directly with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        w = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32) * 0.25, f"layer{i}.weight")
        b = numpy_helper.from_array(np.zeros(16, dtype=np.float32), f"layer{i}.bias")
        inits += [w, b]
        nodes.append(helper.make_node("Gemm", [prev, w.name, b.name], [f"g{i}"], name=f"/layer{i}/Gemm", transB=1))
        nodes.append(helper.make_node("Relu", [f"g{i}"], [f"r{i}"], name=f"/layer{i}/Relu"))
        prev = f"r{i}"
    graph = helper.make_graph(nodes, "deep", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (4, 16))],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, (4, 16))], inits)
    path = folder / "deep.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def onnx_chain(folder: Path, ops: int) -> Path:
    """`ops` unary ops in a row (Relu, Tanh, Sigmoid), no weights and no declared intermediate shapes: the
    reader's cost per node and nothing else; the very file bench_open_vs_netron times against Netron."""
    from bench_open_vs_netron import onnx_chain as chain  # a sibling script: benchmarks/ is first on the path

    return chain(folder / f"chain{ops}.onnx", ops)


def _new_process(path: Path) -> float:
    """open_model in a fresh interpreter, propscope already imported (no torch: a .pt2 is read without it)."""
    import subprocess

    code = (f"import time, propscope.graph.readers as r; t = time.perf_counter(); r.open_model({str(path)!r}); "
            "print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    from propscope.debugger import open_session
    from propscope.graph.readers import open_model

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("making the files (not timed) ...", file=sys.stderr)
        files = {"small CNN (.pt2)": (small_cnn(folder), 0.5, "open"),
                 "5,000-op model (.pt2)": (deep_pt2(folder, 1000), 1.5, "open")}
        try:
            files["5,000-op model (.onnx)"] = (deep_onnx(folder, 2500), 1.5, "open")
            files["20,000-op chain (.onnx)"] = (onnx_chain(folder, 20000), 0.15, "session")
        except ImportError:
            print("onnx is not installed: the .onnx cases are skipped", file=sys.stderr)
        print(f"{'model':<24} {'ops':>6} {'new process':>12} {'first open':>11} {'warm open':>10} "
              f"{'open_session':>12}  target (warm)")
        for label, (path, target, timed) in files.items():
            cold = _new_process(path)
            first, warm, model = _timed(lambda p=path: open_model(p), 6)
            _, session, _ = _timed(lambda p=path: open_session(p, dtype="float64"), 4)
            ops = len(model.graph.ops)  # type: ignore[attr-defined]
            measured = session if timed == "session" else warm
            verdict = "ok" if measured <= target else "SLOW"
            print(f"{label:<24} {ops:>6} {cold:>11.3f}s {first:>10.3f}s {warm:>9.3f}s {session:>11.3f}s  "
                  f"≤ {target} s{' (session)' if timed == 'session' else ''} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
