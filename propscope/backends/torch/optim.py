"""Training on torch with the real `torch.optim` classes, behind the NumPy optimizers' interface.

`TorchOptimizer` takes the same names and hyperparameters as `optimizers.make_optimizer`
(checked by the same code, with the same PyTorch defaults) and the same `step(params, grads,
out=)` call, so the trainer needs no torch code of its own. Each step is the torch class's own
`step()`, not our formulas: trained side by side, the two check each other.

`propscope.backends.optimizer_for` picks it for a torch backend; importing it imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..optimizers import OptimizerError, make_optimizer


class TorchOptimizer:
    """`torch.optim.<Class>` stepping its own copies of the parameters.

    torch.optim keeps its state per parameter tensor and updates those tensors in place; the
    trainer instead alternates two buffers (`out=`). So the optimizer holds one persistent
    tensor per parameter: each step copies the given values in, sets `.grad`, calls the torch
    class's `step()`, and copies the result to `out` (or back into `params`).
    """

    def __init__(self, name: str, param_names: Sequence[str], **hparams: Any) -> None:
        checked = make_optimizer(name, param_names, **hparams)  # one place that knows names, ranges, defaults
        self.name = checked.name
        self.torch_class: type[torch.optim.Optimizer] = getattr(torch.optim, checked.torch_class)
        self.hparams: dict[str, Any] = checked.hparams  # may change between steps (a learning-rate slider)
        self.names = list(checked.names)
        self.steps = 0
        self._params: list[torch.Tensor] = []
        self._torch: torch.optim.Optimizer | None = None

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The torch.optim instance (None before the first step)."""
        return self._torch

    @property
    def state(self) -> dict[str, dict[str, Any]]:
        """The torch optimizer's buffers by parameter name (exp_avg, momentum_buffer, ...)."""
        if self._torch is None:
            return {name: {} for name in self.names}
        pairs = zip(self.names, self._params, strict=True)
        return {name: dict(self._torch.state.get(p, {})) for name, p in pairs}

    def step(self, params: Sequence[Any], grads: Sequence[Any], out: Sequence[Any] | None = None) -> None:
        """One update of every parameter, in the order of `names`, by torch.optim."""
        if len(params) != len(self.names) or len(grads) != len(self.names):
            raise OptimizerError(
                f"expected {len(self.names)} parameters and gradients, got {len(params)} and {len(grads)}"
            )
        self.steps += 1
        if not self.names:
            return
        with torch.no_grad():
            if self._torch is None:
                self._params = [_tensor(p).clone() for p in params]
                self._torch = self.torch_class(self._params, **self.hparams)
            else:
                for own, p in zip(self._params, params, strict=True):
                    own.copy_(_tensor(p))
            self._torch.param_groups[0].update(self.hparams)
            for own, g in zip(self._params, grads, strict=True):
                own.grad = _tensor(g).to(device=own.device, dtype=own.dtype)
            self._torch.step()
            for own, new in zip(self._params, params if out is None else out, strict=True):
                if isinstance(new, torch.Tensor):
                    new.copy_(own)
                else:
                    np.copyto(new, own.cpu().numpy())

    def reset(self) -> None:
        """Forget every buffer and the step count, as a fresh torch optimizer would."""
        self.steps = 0
        self._params = []
        self._torch = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"TorchOptimizer(torch.optim.{self.torch_class.__name__}, {args})"


def _tensor(x: Any) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
