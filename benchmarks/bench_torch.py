"""Tracing overhead of the torch backend: a full traced pass against plain PyTorch, in the same process.

The traced pass is a Session's `run_to_end()` on a fresh trace: every op forward, every op
backward with each VJP from `torch.autograd.grad`, every value and every gradient kept. The
baseline is what a PyTorch user runs: `loss = criterion(model(x), y); loss.backward()` with
torch.nn modules holding the same weights. Both use float32 on the same device.

Run: python benchmarks/bench_torch.py [--device cuda] [--threads 1] [--clock cpu]   (target: ratio <= 2)
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from propscope.backends import get_backend
from propscope.debugger import Session
from propscope.graph import Graph, Model
from propscope.graph.ops import CATALOG


def mlp_model(batch: int = 64, sizes: tuple[int, ...] = (784, 128, 10), seed: int = 0) -> Model:
    """784-128-10 with nn.Linear's layout (x @ Wᵀ + b), ReLU, cross-entropy on class indices."""
    rng = np.random.default_rng(seed)
    g = Graph("mlp")
    h = g.input("x", (batch, sizes[0]))
    arrays = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), 1):
        w, b = g.parameter(f"fc{i}.weight", (fan_out, fan_in)), g.parameter(f"fc{i}.bias", (fan_out,))
        bound = 1 / np.sqrt(fan_in)
        arrays[w.name] = rng.uniform(-bound, bound, (fan_out, fan_in))
        arrays[b.name] = rng.uniform(-bound, bound, fan_out)
        h = g.add("linear", h, w, b, name=f"fc{i}", attrs={"transpose_weight": True})
        if i < len(sizes) - 1:
            h = g.add("relu", h, name=f"relu{i}")
    g.set_outputs(h)
    batch_data = {"x": rng.normal(size=(batch, sizes[0])), "y": rng.integers(0, sizes[-1], batch)}
    return Model(g, arrays, batch=batch_data, loss="cross_entropy")


def cnn_model(batch: int = 64, seed: int = 0) -> Model:
    """A small CNN on 28×28 images: conv 8@3×3, ReLU, max-pool 2, conv 16@3×3, ReLU, max-pool 2, dense 10."""
    rng = np.random.default_rng(seed)
    g = Graph("small-cnn")
    h = g.input("x", (batch, 1, 28, 28))
    arrays: dict[str, np.ndarray] = {}

    def param(name: str, shape: tuple[int, ...], fan_in: int) -> object:
        arrays[name] = rng.uniform(-1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in), shape)
        return g.parameter(name, shape)

    for i, (cin, cout) in enumerate(((1, 8), (8, 16)), 1):
        w, b = param(f"conv{i}.weight", (cout, cin, 3, 3), cin * 9), param(f"conv{i}.bias", (cout,), cin * 9)
        h = g.add("conv2d", h, w, b, name=f"conv{i}", attrs={"padding": 1})
        h = g.add("max_pool2d", g.add("relu", h, name=f"relu{i}"), name=f"pool{i}", attrs={"kernel_size": 2})
    h = g.add("flatten", h, name="flat")
    w, b = param("fc.weight", (10, 16 * 7 * 7), 16 * 7 * 7), param("fc.bias", (10,), 16 * 7 * 7)
    g.set_outputs(g.add("linear", h, w, b, name="fc", attrs={"transpose_weight": True}))
    batch_data = {"x": rng.normal(size=(batch, 1, 28, 28)), "y": rng.integers(0, 10, batch)}
    return Model(g, arrays, batch=batch_data, loss="cross_entropy")


def _module(model: Model, kind: str) -> torch.nn.Module:
    """The same network as torch.nn modules, with the model's weights."""
    nn = torch.nn
    if kind == "mlp":
        net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        names = {"fc1": net[0], "fc2": net[2]}
    else:
        net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
        names = {"conv1": net[0], "conv2": net[3], "fc": net[7]}
    with torch.no_grad():
        for prefix, layer in names.items():
            layer.weight.copy_(torch.from_numpy(model.arrays[f"{prefix}.weight"]))
            layer.bias.copy_(torch.from_numpy(model.arrays[f"{prefix}.bias"]))
    return net


def plain_torch(model: Model, kind: str, device: str, input_grad: bool = False) -> Callable[[], None]:
    """What a PyTorch user runs: forward, loss, backward. With `input_grad`, also dL/dx, which the trace
    keeps like every other gradient (the same work as the trace, without the recording)."""
    net = _module(model, kind).to(device)
    x = torch.as_tensor(model.batch["x"], dtype=torch.float32, device=device).requires_grad_(input_grad)
    y = torch.as_tensor(model.batch["y"], device=device)

    def run() -> None:
        net.zero_grad(set_to_none=True)
        x.grad = None
        loss = F.cross_entropy(net(x), y)
        loss.backward()

    return run


def traced(model: Model, device: str) -> Callable[[], None]:
    session = Session(model, get_backend("torch", "float32", device))

    def run() -> None:
        session.refresh()  # a fresh trace: nothing computed
        session.run_to_end()

    return run


def compiled(model: Model, device: str) -> Callable[[], None]:
    """The training fast path (one autograd pass, nothing kept), for reference."""
    session = Session(model, get_backend("torch", "float32", device))
    program = session.backend.compile(session.graph)
    leaves = session._leaves()
    names = [n.name for n in session.graph.parameters]
    return lambda: program.loss_and_grads(leaves, names)


def numpy_traced(model: Model) -> Callable[[], None]:
    session = Session(model, get_backend("numpy", "float32"))

    def run() -> None:
        session.refresh()
        session.run_to_end()

    return run


def timings(
    runs: dict[str, Callable[[], None]], repeat: int, device: str, blocks: int = 30, clock: str = "wall"
) -> dict[str, float]:
    """Seconds per call of each run: the fastest of `blocks` blocks of `repeat` calls (as timeit advises:
    slower blocks measure other work on the machine, not this code). Blocks alternate between the runs.
    `clock="cpu"` counts this process's CPU time instead of wall time."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for fn in runs.values():
        for _ in range(max(5, repeat // 10)):
            fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(blocks):
        for name, fn in runs.items():
            start = now()
            for _ in range(repeat):
                fn()
            sync()
            samples[name].append((now() - start) / repeat)
    return {name: min(times) for name, times in samples.items()}


def report(title: str, model: Model, kind: str, device: str, repeat: int, clock: str = "wall") -> float:
    runs = {
        "plain torch.nn forward + backward": plain_torch(model, kind, device),
        "plain torch.nn, also dL/dx": plain_torch(model, kind, device, input_grad=True),
        "propscope torch trace, run_to_end": traced(model, device),
        "propscope torch program (training)": compiled(model, device),
    }
    if device == "cpu":
        runs["propscope NumPy trace, for reference"] = numpy_traced(model)
    t = timings(runs, repeat, device, clock=clock)
    base = t["plain torch.nn forward + backward"]
    print(f"{title} on {device} (float32, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{clock} time)")
    for name, sec in t.items():
        target = "  (target <= 2)" if "trace, run_to_end" in name and "torch" in name else ""
        print(f"  {name:<38} {sec * 1e6:9.1f} µs   ratio {sec / base:5.2f}{target}")
    return t["propscope torch trace, run_to_end"] / base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=10, help="calls per timing block (default 10)")
    parser.add_argument("--threads", type=int, help="torch's intra-op threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall (default) or cpu time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report("MLP 784-128-10, batch 64", mlp_model(), "mlp", args.device, args.repeat, args.clock)
    if "conv2d" in CATALOG:
        report("CNN conv8-pool-conv16-pool-fc10 on 28×28, batch 64", cnn_model(), "cnn", args.device,
               max(1, args.repeat // 3), args.clock)
    else:
        print("CNN: skipped, the op catalog has no conv2d")


if __name__ == "__main__":
    main()
