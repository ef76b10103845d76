"""The tutorial's five optimizers (Part 8): SGD, Momentum, RMSprop, Adam, AdamW.

Each takes PyTorch's hyperparameters with PyTorch's defaults and repeats the single-tensor
update of the matching `torch.optim` class op for op, so a trajectory equals torch's to rounding
(the tests hold float64 to 1e-10 over 100 steps). The updates use only elementwise ufuncs with
`out=`, which NumPy and torch both spell the same way, so NumPy arrays and torch tensors both work
and a step allocates nothing after the first.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..graph.errors import PropscopeError

Array = Any  # a NumPy array or a torch tensor


class OptimizerError(PropscopeError):
    """An optimizer that cannot be built: unknown name, unknown or out-of-range hyperparameter."""


def _namespace(x: Array) -> Any:
    """`numpy` for arrays, `torch` for tensors: both have multiply/add/sqrt/maximum with `out=`."""
    if isinstance(x, np.ndarray):
        return np
    return sys.modules[type(x).__module__.split(".")[0]]


# -- hyperparameter checks: each returns the value to use or raises with a sentence -----------
def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise OptimizerError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise OptimizerError(f"{name} must be finite, got {value}")
    return value


def _non_negative(name: str, value: Any) -> float:
    value = _number(name, value)
    if value < 0:
        raise OptimizerError(f"{name} must be >= 0, got {value:g}")
    return value


def _learning_rate(name: str, value: Any) -> float:
    value = _number(name, value)
    if value < 0:
        raise OptimizerError(f"the learning rate must be >= 0, got {name}={value:g}")
    return value


def _unit(name: str, value: Any) -> float:
    value = _non_negative(name, value)
    if value > 1:
        raise OptimizerError(f"{name} must be in [0, 1], got {value:g}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise OptimizerError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _betas(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise OptimizerError(f"betas must be two numbers (beta1, beta2), got {value!r}")
    out = []
    for i, b in enumerate(value):
        b = _number(f"betas[{i}]", b)
        if not 0.0 <= b < 1.0:
            raise OptimizerError(f"betas[{i}] must be in [0, 1), got {b:g}")
        out.append(b)
    return out[0], out[1]


Check = Callable[[str, Any], Any]


class Optimizer:
    """Updates a fixed list of parameters from their gradients, keeping its state per parameter.

    `step(params, grads)` updates `params` in place; with `out=` it writes the new values there
    and leaves `params` untouched (the trainer keeps the previous epoch's values that way).
    Hyperparameters live in `hparams` and may be changed between steps (a learning-rate slider).
    """

    name: ClassVar[str]
    torch_class: ClassVar[str]
    spec: ClassVar[dict[str, tuple[Any, Check]]]  # hyperparameter -> (PyTorch's default, check)

    def __init__(self, param_names: Sequence[str], **hparams: Any) -> None:
        unknown = sorted(set(hparams) - set(self.spec))
        if unknown:
            raise OptimizerError(
                f"{self.name} has no hyperparameter {unknown[0]!r}; its hyperparameters: {', '.join(self.spec)}"
            )
        self.hparams: dict[str, Any] = {
            key: check(key, hparams.get(key, default)) for key, (default, check) in self.spec.items()
        }
        self._check_together()
        self.names = list(param_names)
        if len(set(self.names)) != len(self.names):
            raise OptimizerError("the parameter names given to the optimizer repeat")
        self.steps = 0
        # torch's buffers under torch's names (momentum_buffer, exp_avg, ...), shown to users
        self.state: dict[str, dict[str, Array]] = {name: {} for name in self.names}
        self._slots = [self.state[name] for name in self.names]
        self._work: list[dict[str, Array]] = [{} for _ in self.names]  # scratch space, allocated once
        self._scratch: list[Array] | None = None  # plain SGD's one buffer per parameter

    def _check_together(self) -> None:
        """Checks that involve several hyperparameters."""

    def step(self, params: Sequence[Array], grads: Sequence[Array], out: Sequence[Array] | None = None) -> None:
        """One update of every parameter, in the order of `names`."""
        if len(params) != len(self.names) or len(grads) != len(self.names):
            raise OptimizerError(f"expected {len(self.names)} parameters and gradients, got {len(params)} and "
                                 f"{len(grads)}")
        self.steps += 1
        if not self.names:
            return
        xp = _namespace(params[0])
        targets = params if out is None else out
        for state, work, p, g, new in zip(self._slots, self._work, params, grads, targets, strict=True):
            if "scratch" not in work:
                work["scratch"] = xp.empty_like(p)
            self._update(xp, state, work, p, g, new)

    def _update(self, xp: Any, state: dict[str, Array], work: dict[str, Array], p: Array, g: Array,
                new: Array) -> None:
        raise NotImplementedError

    def _grad(self, xp: Any, work: dict[str, Array], p: Array, g: Array, weight_decay: float) -> Array:
        """The gradient the update sees: negated when maximizing, plus weight_decay × param (L2)."""
        if not self.hparams["maximize"] and weight_decay == 0:
            return g
        d = _buffer(xp, work, "grad", p)
        if self.hparams["maximize"]:
            xp.negative(g, out=d)
            g = d
        if weight_decay != 0:  # torch: grad.add(param, alpha=weight_decay)
            t = work["scratch"]
            xp.multiply(p, weight_decay, out=t)
            xp.add(g, t, out=d)
        return d

    def reset(self) -> None:
        """Forget every buffer and the step count, as a fresh torch optimizer would."""
        self.steps = 0
        self._scratch = None
        for state, work in zip(self._slots, self._work, strict=True):
            state.clear()
            work.clear()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """torch.optim.SGD: p -= lr · g, with optional momentum buffer, dampening and Nesterov."""

    name = "sgd"
    torch_class = "SGD"
    spec: ClassVar[dict[str, tuple[Any, Check]]] = {
        "lr": (1e-3, _learning_rate),
        "momentum": (0.0, _non_negative),
        "dampening": (0.0, _number),
        "weight_decay": (0.0, _non_negative),
        "nesterov": (False, _flag),
        "maximize": (False, _flag),
    }

    def _check_together(self) -> None:
        h = self.hparams
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise OptimizerError("Nesterov momentum needs momentum > 0 and dampening 0")

    def step(self, params: Sequence[Array], grads: Sequence[Array], out: Sequence[Array] | None = None) -> None:
        h = self.hparams
        if h["momentum"] != 0 or h["weight_decay"] != 0 or h["maximize"] or not params:
            super().step(params, grads, out)
            return
        # plain SGD, the tutorial's rule: two ufuncs per parameter and no Python calls between them
        if len(params) != len(self.names) or len(grads) != len(self.names):
            raise OptimizerError(f"expected {len(self.names)} parameters and gradients, got {len(params)} and "
                                 f"{len(grads)}")
        self.steps += 1
        xp = np if type(params[0]) is np.ndarray else _namespace(params[0])
        if self._scratch is None:
            self._scratch = [_buffer(xp, work, "scratch", p) for work, p in zip(self._work, params, strict=True)]
        multiply, add, step = xp.multiply, xp.add, -h["lr"]
        for p, g, new, t in zip(params, grads, params if out is None else out, self._scratch, strict=True):
            multiply(g, step, out=t)  # param.add_(grad, alpha=-lr)
            add(p, t, out=new)

    def _update(self, xp: Any, state: dict[str, Array], work: dict[str, Array], p: Array, g: Array,
                new: Array) -> None:
        h = self.hparams
        momentum = h["momentum"]
        g = self._grad(xp, work, p, g, h["weight_decay"])
        t = work["scratch"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:  # torch starts the buffer at the first gradient, not at zero
                buf = state["momentum_buffer"] = xp.empty_like(p)
                buf[...] = g
            else:  # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                xp.multiply(buf, momentum, out=buf)
                if h["dampening"] != 0:
                    xp.multiply(g, 1 - h["dampening"], out=t)
                    xp.add(buf, t, out=buf)
                else:
                    xp.add(buf, g, out=buf)
            if h["nesterov"]:  # grad.add(buf, alpha=momentum)
                d = _buffer(xp, work, "grad", p)
                xp.multiply(buf, momentum, out=t)
                xp.add(g, t, out=d)
                g = d
            else:
                g = buf
        xp.multiply(g, -h["lr"], out=t)  # param.add_(grad, alpha=-lr)
        xp.add(p, t, out=new)


class Momentum(SGD):
    """SGD with momentum 0.9: torch.optim.SGD(momentum=0.9)."""

    name = "momentum"
    spec: ClassVar[dict[str, tuple[Any, Check]]] = {**SGD.spec, "momentum": (0.9, _non_negative)}


class RMSprop(Optimizer):
    """torch.optim.RMSprop: divide by a running root-mean-square of the gradient."""

    name = "rmsprop"
    torch_class = "RMSprop"
    spec: ClassVar[dict[str, tuple[Any, Check]]] = {
        "lr": (1e-2, _learning_rate),
        "alpha": (0.99, _non_negative),
        "eps": (1e-8, _non_negative),
        "weight_decay": (0.0, _non_negative),
        "momentum": (0.0, _non_negative),
        "centered": (False, _flag),
        "maximize": (False, _flag),
    }

    def _update(self, xp: Any, state: dict[str, Array], work: dict[str, Array], p: Array, g: Array,
                new: Array) -> None:
        h = self.hparams
        alpha = h["alpha"]
        t = work["scratch"]
        if "square_avg" not in state:
            state["square_avg"] = xp.zeros_like(p)
            work["avg"] = xp.empty_like(p)
            if h["centered"]:
                state["grad_avg"] = xp.zeros_like(p)
            if h["momentum"] > 0:
                state["momentum_buffer"] = xp.zeros_like(p)
        g = self._grad(xp, work, p, g, h["weight_decay"])
        square_avg, avg = state["square_avg"], work["avg"]
        xp.multiply(square_avg, alpha, out=square_avg)  # square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        xp.multiply(g, 1 - alpha, out=t)
        xp.multiply(t, g, out=t)
        xp.add(square_avg, t, out=square_avg)
        if h["centered"]:
            grad_avg = state["grad_avg"]
            _lerp(xp, grad_avg, g, 1 - alpha, t)
            xp.multiply(grad_avg, grad_avg, out=t)  # square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
            xp.subtract(square_avg, t, out=avg)
            xp.sqrt(avg, out=avg)
        else:
            xp.sqrt(square_avg, out=avg)
        xp.add(avg, h["eps"], out=avg)
        if h["momentum"] > 0:  # buf.mul_(momentum).addcdiv_(grad, avg); param.add_(buf, alpha=-lr)
            buf = state["momentum_buffer"]
            xp.multiply(buf, h["momentum"], out=buf)
            xp.divide(g, avg, out=t)
            xp.add(buf, t, out=buf)
            xp.multiply(buf, -h["lr"], out=t)
        else:  # param.addcdiv_(grad, avg, value=-lr)
            xp.multiply(g, -h["lr"], out=t)
            xp.divide(t, avg, out=t)
        xp.add(p, t, out=new)


class Adam(Optimizer):
    """torch.optim.Adam: bias-corrected running means of the gradient and its square."""

    name = "adam"
    torch_class = "Adam"
    decoupled = False
    spec: ClassVar[dict[str, tuple[Any, Check]]] = {
        "lr": (1e-3, _learning_rate),
        "betas": ((0.9, 0.999), _betas),
        "eps": (1e-8, _non_negative),
        "weight_decay": (0.0, _non_negative),
        "amsgrad": (False, _flag),
        "maximize": (False, _flag),
    }

    def _update(self, xp: Any, state: dict[str, Array], work: dict[str, Array], p: Array, g: Array,
                new: Array) -> None:
        h = self.hparams
        lr, (beta1, beta2), weight_decay = h["lr"], h["betas"], h["weight_decay"]
        t = work["scratch"]
        if "exp_avg" not in state:
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
            work["denom"] = xp.empty_like(p)
            if h["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p)
        if self.decoupled and weight_decay != 0:  # AdamW: param.mul_(1 - lr * weight_decay), before all else
            xp.multiply(p, 1 - lr * weight_decay, out=new)
            p = new
            g = self._grad(xp, work, p, g, 0.0)
        else:
            g = self._grad(xp, work, p, g, weight_decay)
        exp_avg, exp_avg_sq, denom = state["exp_avg"], state["exp_avg_sq"], work["denom"]
        _lerp(xp, exp_avg, g, 1 - beta1, t)
        xp.multiply(exp_avg_sq, beta2, out=exp_avg_sq)  # exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        xp.multiply(g, 1 - beta2, out=t)
        xp.multiply(t, g, out=t)
        xp.add(exp_avg_sq, t, out=exp_avg_sq)
        step = float(self.steps)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        second = exp_avg_sq
        if h["amsgrad"]:
            second = state["max_exp_avg_sq"]
            xp.maximum(second, exp_avg_sq, out=second)
        xp.sqrt(second, out=denom)  # (sqrt(v) / bias_correction2_sqrt).add_(eps)
        xp.divide(denom, bias_correction2_sqrt, out=denom)
        xp.add(denom, h["eps"], out=denom)
        xp.multiply(exp_avg, -step_size, out=t)  # param.addcdiv_(exp_avg, denom, value=-step_size)
        xp.divide(t, denom, out=t)
        xp.add(p, t, out=new)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with the weight decay applied to the parameter, not the gradient."""

    name = "adamw"
    torch_class = "AdamW"
    decoupled = True
    spec: ClassVar[dict[str, tuple[Any, Check]]] = {**Adam.spec, "weight_decay": (1e-2, _non_negative)}


def _buffer(xp: Any, state: dict[str, Array], key: str, like: Array) -> Array:
    buf = state.get(key)
    if buf is None:
        buf = state[key] = xp.empty_like(like)
    return buf


def _lerp(xp: Any, start: Array, end: Array, weight: float, tmp: Array) -> None:
    """start.lerp_(end, weight) with ATen's two formulas (the second is exact near weight 1)."""
    xp.subtract(end, start, out=tmp)
    if abs(weight) < 0.5:
        xp.multiply(tmp, weight, out=tmp)
        xp.add(start, tmp, out=start)
    else:
        xp.multiply(tmp, 1 - weight, out=tmp)
        xp.subtract(end, tmp, out=start)


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Momentum, RMSprop, Adam, AdamW)}


def make_optimizer(name: str, param_names: Sequence[str], **hparams: Any) -> Optimizer:
    """An optimizer by name, its hyperparameters checked now; None means "PyTorch's default"."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise OptimizerError(f"unknown optimizer {name!r}; known optimizers: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[key](param_names, **{k: v for k, v in hparams.items() if v is not None})


def hyperparameters(name: str) -> Mapping[str, Any]:
    """PyTorch's default for each hyperparameter of optimizer `name`."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise OptimizerError(f"unknown optimizer {name!r}; known optimizers: {', '.join(OPTIMIZERS)}")
    return {k: default for k, (default, _) in OPTIMIZERS[key].spec.items()}
