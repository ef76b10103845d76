"""Single steps of the NumPy backend on real sizes, against plain torch on the CPU doing the same work.

1. VGG-16's first two convolutions at 224x224 (torchvision's `features[0]`, 3 -> 64 channels, and `features[2]`,
   64 -> 64, 3x3, padding 1, batch 1): the forward, and the backward as the debugger asks for it (the gradients of
   the input, the weight and the bias), against `torch.nn.functional.conv2d` and `torch.autograd.grad`.
2. GELU on ViT-B/16's MLP activations (197 x 3072 = 605,184 values): `erf`, GELU's forward and its local
   derivative (what a backward step multiplies by), against torch's `special.erf`, `gelu` and gelu's autograd.

Each time is the median of --repeat runs. --pause S waits S seconds before each timed run, as a person stepping
by hand does: memory the process freed is then given back to the host on a VM with a balloon, and the next big
allocation pays for touching it again (see `kernels.scratch`). The machine's load average is printed first: on a
shared machine, compare numbers taken under the same load.

Run: python benchmarks/bench_numpy_steps.py [--repeat 7] [--pause 0] [--dtype float32 float64] [--only conv|gelu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from propscope.backends.numpy import activations, conv

VIT_MLP = (197, 3072)  # ViT-B/16's MLP hidden activations for one 224x224 image
VGG_CONVS = {  # name: (input shape, weight shape)
    "features.0 (3->64)": ((1, 3, 224, 224), (64, 3, 3, 3)),
    "features.2 (64->64)": ((1, 64, 224, 224), (64, 64, 3, 3)),
}


def median_ms(fn: Callable[[], object], repeat: int, pause: float) -> float:
    fn()  # warm: shape rules, caches, BLAS threads
    times = []
    for _ in range(repeat):
        if pause:
            time.sleep(pause)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench_convs(dtype: str, repeat: int, pause: float, torch: object | None) -> None:
    attrs = {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1}
    rng = np.random.default_rng(0)
    for name, (x_shape, w_shape) in VGG_CONVS.items():
        x = rng.standard_normal(x_shape).astype(dtype)
        w = (rng.standard_normal(w_shape) * 0.05).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        out = conv.conv2d.forward(x, w, b, **attrs)
        g = rng.standard_normal(out.shape).astype(dtype)
        forward = median_ms(lambda: conv.conv2d.forward(x, w, b, **attrs), repeat, pause)  # noqa: B023
        backward = median_ms(lambda: conv.conv2d.vjp(g, [x, w, b], out, attrs), repeat, pause)  # noqa: B023
        line = f"  {dtype} {name:20s} numpy: forward {forward:7.1f} ms  backward {backward:7.1f} ms"
        if torch is not None:
            F = torch.nn.functional  # type: ignore[attr-defined]
            xt, wt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))  # type: ignore[attr-defined]
            gt = torch.from_numpy(g)  # type: ignore[attr-defined]
            outs = []

            def torch_forward() -> None:
                outs[:] = [F.conv2d(xt, wt, bt, padding=1)]  # noqa: B023

            def torch_backward() -> None:
                torch.autograd.grad(outs[0], (xt, wt, bt), gt, retain_graph=True)  # type: ignore[attr-defined]  # noqa: B023

            t_forward = median_ms(torch_forward, repeat, pause)
            t_backward = median_ms(torch_backward, repeat, pause)
            line += f" | torch: forward {t_forward:7.1f} ms  backward {t_backward:7.1f} ms"
        print(line)


def bench_gelu(dtype: str, repeat: int, pause: float, torch: object | None) -> None:
    z = np.random.default_rng(1).standard_normal(VIT_MLP).astype(dtype) * 2.0
    a = activations.gelu.forward(z, "none")
    numbers = {
        "erf": median_ms(lambda: activations.erf(z), repeat, pause),
        "gelu": median_ms(lambda: activations.gelu.forward(z, "none"), repeat, pause),
        "gelu'": median_ms(lambda: activations.gelu.partials([z], a, {"approximate": "none"}), repeat, pause),
    }
    line = f"  {dtype} {z.size:,} values numpy: " + "  ".join(f"{k} {v:6.1f} ms" for k, v in numbers.items())
    if torch is not None:
        zt = torch.from_numpy(z)  # type: ignore[attr-defined]
        zg = zt.clone().requires_grad_(True)
        out = torch.nn.functional.gelu(zg)  # type: ignore[attr-defined]
        ones = torch.ones_like(out)  # type: ignore[attr-defined]
        theirs = {
            "erf": median_ms(lambda: torch.special.erf(zt), repeat, pause),  # type: ignore[attr-defined]
            "gelu": median_ms(lambda: torch.nn.functional.gelu(zt), repeat, pause),  # type: ignore[attr-defined]
            "gelu backward": median_ms(
                lambda: torch.autograd.grad(out, zg, ones, retain_graph=True), repeat, pause  # type: ignore[attr-defined]
            ),
        }
        line += " | torch: " + "  ".join(f"{k} {v:6.1f} ms" for k, v in theirs.items())
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds to wait before each timed run")
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--only", choices=["conv", "gelu"])
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    torch = None
    if not args.no_torch:
        try:
            import torch  # type: ignore[no-redef]
        except ImportError:
            print("torch is not installed: NumPy numbers only")
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs; "
          f"median of {args.repeat}, pause {args.pause} s")
    for dtype in args.dtype:
        if args.only in (None, "conv"):
            bench_convs(dtype, args.repeat, args.pause, torch)
        if args.only in (None, "gelu"):
            bench_gelu(dtype, args.repeat, args.pause, torch)


if __name__ == "__main__":
    main()
