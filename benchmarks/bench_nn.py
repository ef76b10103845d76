"""Speed of the deep-learning kernels on the NumPy backend against PyTorch on the CPU, in the same process.

- conv2d forward + backward (VJP for input, weight and bias), batch 32, 1×28×28 → 8 channels, 3×3:
  target at most 3× torch.nn.functional.conv2d forward + autograd backward.
- one LSTM step forward + backward at hidden size 64 (batch 32, input 64) against the same cell in torch.

Both sides run float32 by default (`--dtype float64` for the other) in one process. Timings are the best
of 15 interleaved rounds; the ratio is NumPy time / torch time.

Run: python benchmarks/bench_nn.py [--dtype float32|float64] [--threads N]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import numpy as np

from propscope.backends.numpy import KERNELS


def best_seconds(ours: Callable[[], object], theirs: Callable[[], object], repeat: int = 15) -> tuple[float, float]:
    """Seconds per call of each, the best of `repeat` rounds, the two interleaved so both see the same load.

    The best round, not the median: on a shared machine the slow rounds measure the neighbours.
    """
    numbers = [max(1, int(0.05 / max(timeit.timeit(fn, number=1), 1e-6))) for fn in (ours, theirs)]
    times: list[list[float]] = [[], []]
    for _ in range(repeat):
        for i, (fn, number) in enumerate(zip((ours, theirs), numbers, strict=True)):
            times[i].append(timeit.timeit(fn, number=number) / number)
    return min(times[0]), min(times[1])


def conv_case(dtype: str) -> tuple[Callable[[], object], Callable[[], object]]:
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 1, 28, 28)).astype(dtype)
    w = (rng.standard_normal((8, 1, 3, 3)) / 3).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    attrs = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
    k = KERNELS["conv2d"]
    g = np.ones((32, 8, 26, 26), dtype=dtype)

    def ours() -> object:
        out = k.forward(x, w, b, **attrs)
        return k.vjp(g, [x, w, b], out, attrs)

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tg = torch.tensor(g)

    def theirs() -> object:
        out = F.conv2d(tx, tw, tb)
        return torch.autograd.grad(out, (tx, tw, tb), tg)

    return ours, theirs


def lstm_case(dtype: str, hidden: int = 64, batch: int = 32) -> tuple[Callable[[], object], Callable[[], object]]:
    import torch

    rng = np.random.default_rng(1)
    bound = 1 / np.sqrt(hidden)
    x = rng.standard_normal((batch, hidden)).astype(dtype)
    s = rng.standard_normal((2, batch, hidden)).astype(dtype)
    weights = [rng.uniform(-bound, bound, shape).astype(dtype)
               for shape in ((4 * hidden, hidden), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,))]
    k = KERNELS["lstm_cell"]
    g = np.ones((2, batch, hidden), dtype=dtype)

    def ours() -> object:
        out = k.forward(x, s, *weights)
        return k.vjp(g, [x, s, *weights], out, {})

    cell = torch.nn.LSTMCell(hidden, hidden).to(getattr(torch, dtype))
    with torch.no_grad():
        for p, value in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), weights, strict=True):
            p.copy_(torch.tensor(value))
    tx = torch.tensor(x, requires_grad=True)
    th, tc = (torch.tensor(a, requires_grad=True) for a in s)
    tg = torch.tensor(g)
    params = list(cell.parameters())

    def theirs() -> object:
        h, c = cell(tx, (th, tc))
        return torch.autograd.grad(torch.stack([h, c]), [tx, th, tc, *params], tg)

    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.dtype}, torch {torch.__version__} on {torch.get_num_threads()} thread(s), numpy {np.__version__}")
    for name, make, target in (
        ("conv2d fwd+bwd  32×1×28×28 → 8, 3×3", conv_case, 3.0),
        ("lstm step fwd+bwd  batch 32, hidden 64", lstm_case, None),
    ):
        ours, theirs = make(args.dtype)
        t_ours, t_theirs = best_seconds(ours, theirs)
        ratio = t_ours / t_theirs
        verdict = "" if target is None else (" ok" if ratio <= target else f" ABOVE the {target:g}× target")
        print(f"{name:<42} numpy {t_ours * 1e3:8.3f} ms   torch {t_theirs * 1e3:8.3f} ms   "
              f"ratio {ratio:5.2f}×{verdict}")


if __name__ == "__main__":
    main()
