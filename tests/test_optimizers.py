"""The five optimizers: the same trajectories as torch.optim, PyTorch's defaults, settings checked up front."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from propscope.backends.optimizers import OPTIMIZERS, OptimizerError, hyperparameters, make_optimizer
from propscope.graph.errors import PropscopeError

SHAPES = [(3, 4), (4,), ()]
STEPS = 100
RTOL = 1e-10

TORCH_CLASS = {"sgd": "SGD", "momentum": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}

# (our name, hyperparameters): every branch of every update, each with PyTorch's meaning
CASES = [
    ("sgd", {"lr": 0.05}),
    ("sgd", {"lr": 0.05, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.5, "dampening": 0.3}),
    ("sgd", {"lr": 0.002, "maximize": True}),
    ("momentum", {"lr": 0.02}),
    ("momentum", {"lr": 0.02, "nesterov": True}),
    ("momentum", {"lr": 0.02, "nesterov": True, "weight_decay": 0.05}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "centered": True}),
    ("rmsprop", {"lr": 0.01, "centered": True, "momentum": 0.8, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.3, "centered": True}),  # lerp weight 0.7: ATen's second formula
    ("rmsprop", {"lr": 0.01, "momentum": 0.9, "eps": 1e-3, "maximize": True}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.01, "amsgrad": True}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1, "betas": (0.8, 0.99)}),
    ("adam", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-6}),  # lerp weight 0.5: the second formula
    ("adam", {"lr": 0.003, "maximize": True, "amsgrad": True}),
    ("adamw", {"lr": 0.01}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.3, "amsgrad": True}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.0}),
]


def _start(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in SHAPES], [rng.normal(size=s) for s in SHAPES]


def _gradients(params: list[np.ndarray], targets: list[np.ndarray]) -> list[np.ndarray]:
    """d/dp of Σ (p - t)² + 0.075 p⁴: not quadratic, so every step sees a new gradient."""
    return [np.asarray(2.0 * (p - t) + 0.3 * p**3) for p, t in zip(params, targets, strict=True)]


def _case_id(case: tuple[str, dict[str, object]]) -> str:
    name, hp = case
    return name + "".join(f"-{k}={v}" for k, v in hp.items() if k != "lr")


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_trajectory_equals_torch_optim(case: tuple[str, dict[str, object]]) -> None:
    import torch

    name, hp = case
    start, targets = _start()
    ours = [p.copy() for p in start]
    optimizer = make_optimizer(name, ["W", "b", "s"], **hp)
    theirs = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in start]
    torch_hp = dict(hp)
    if name == "momentum":
        torch_hp.setdefault("momentum", 0.9)
    reference = getattr(torch.optim, TORCH_CLASS[name])(theirs, **torch_hp)
    for step in range(1, STEPS + 1):
        optimizer.step(ours, _gradients(ours, targets))
        for t, g in zip(theirs, _gradients([t.detach().numpy() for t in theirs], targets), strict=True):
            t.grad = torch.from_numpy(g)
        reference.step()
        for mine, t in zip(ours, theirs, strict=True):
            want = t.detach().numpy()
            scale = max(float(np.max(np.abs(want))), 1e-300)
            err = float(np.max(np.abs(mine - want))) / scale
            assert err <= RTOL, f"{name} {hp}: step {step} differs from torch by {err:.2e} (relative)"
    assert optimizer.steps == STEPS


@pytest.mark.torch
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_defaults_are_pytorchs(name: str) -> None:
    import torch

    cls = getattr(torch.optim, TORCH_CLASS[name])
    signature = inspect.signature(cls.__init__).parameters
    ours = hyperparameters(name)
    for key, value in ours.items():
        assert key in signature, f"{name}: torch.optim.{cls.__name__} has no {key!r}"
        want = signature[key].default
        if name == "momentum" and key == "momentum":
            want = 0.9  # the tutorial's Momentum is SGD(momentum=0.9)
        assert value == (tuple(want) if isinstance(want, tuple) else want), f"{name}.{key}"
    torch_numeric = {k for k, p in signature.items() if isinstance(p.default, float | bool | tuple) and
                     k not in ("foreach", "capturable", "differentiable", "fused", "decoupled_weight_decay")}
    assert torch_numeric <= set(ours), f"{name} lacks {sorted(torch_numeric - set(ours))}"


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_out_leaves_params_and_matches_in_place(name: str) -> None:
    start, targets = _start(1)
    a = [p.copy() for p in start]
    b = [p.copy() for p in start]
    spare = [np.empty_like(p) for p in start]
    in_place = make_optimizer(name, ["W", "b", "s"], lr=0.01)
    buffered = make_optimizer(name, ["W", "b", "s"], lr=0.01)
    for _ in range(5):
        in_place.step(a, _gradients(a, targets))
        before = [p.copy() for p in b]
        buffered.step(b, _gradients(b, targets), out=spare)
        assert all(np.array_equal(x, y) for x, y in zip(b, before, strict=True)), "out= changed the inputs"
        b, spare = spare, b
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_float32_stays_float32(name: str) -> None:
    start, targets = _start(2)
    params = [p.astype(np.float32) for p in start]
    opt = make_optimizer(name, ["W", "b", "s"], lr=0.01)
    for _ in range(3):
        opt.step(params, [g.astype(np.float32) for g in _gradients(params, targets)])
    assert all(p.dtype == np.float32 for p in params)
    assert all(v.dtype == np.float32 for state in opt.state.values() for v in state.values())


@pytest.mark.torch
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_same_update_on_torch_tensors(name: str) -> None:
    """The updates use only ufuncs that torch spells like NumPy, so tensors step the same way."""
    import torch

    start, targets = _start(3)
    arrays = [p.copy() for p in start]
    tensors = [torch.from_numpy(p.copy()) for p in start]
    hp = {"lr": 0.01, "weight_decay": 0.05}
    on_numpy, on_torch = make_optimizer(name, ["W", "b", "s"], **hp), make_optimizer(name, ["W", "b", "s"], **hp)
    for _ in range(10):
        on_numpy.step(arrays, _gradients(arrays, targets))
        on_torch.step(tensors, [torch.from_numpy(g) for g in _gradients([t.numpy() for t in tensors], targets)])
    for a, t in zip(arrays, tensors, strict=True):
        np.testing.assert_allclose(t.numpy(), a, rtol=1e-14, atol=1e-15)


def test_learning_rate_can_change_between_steps() -> None:
    p = [np.array([1.0])]
    opt = make_optimizer("sgd", ["w"], lr=0.5)
    opt.step(p, [np.array([1.0])])
    opt.hparams["lr"] = 0.25
    opt.step(p, [np.array([1.0])])
    assert p[0][0] == 1.0 - 0.5 - 0.25


def test_reset_forgets_state() -> None:
    p = [np.array([1.0, 2.0])]
    opt = make_optimizer("adam", ["w"], lr=0.1)
    opt.step(p, [np.array([0.5, -0.5])])
    assert opt.steps == 1 and opt.state["w"]
    opt.reset()
    assert opt.steps == 0 and not opt.state["w"]


# -- settings are checked before any work, with a sentence a user can act on ---------------------
@pytest.mark.parametrize(
    ("name", "hparams", "words"),
    [
        ("sgd", {"lr": -0.1}, "learning rate must be >= 0"),
        ("adam", {"lr": -1e-3}, "learning rate must be >= 0"),
        ("adam", {"lr": math.nan}, "lr must be finite"),
        ("adam", {"lr": "fast"}, "lr must be a number"),
        ("adam", {"betas": (0.9, 1.0)}, "betas[1] must be in [0, 1)"),
        ("adamw", {"betas": (-0.1, 0.999)}, "betas[0] must be in [0, 1)"),
        ("adam", {"betas": (0.9,)}, "betas must be two numbers"),
        ("adam", {"betas": "0.9,0.99"}, "betas must be two numbers"),
        ("adam", {"eps": -1e-8}, "eps must be >= 0"),
        ("rmsprop", {"alpha": -0.5}, "alpha must be >= 0"),
        ("momentum", {"momentum": -0.9}, "momentum must be >= 0"),
        ("sgd", {"weight_decay": -1.0}, "weight_decay must be >= 0"),
        ("sgd", {"nesterov": True}, "Nesterov momentum needs momentum > 0"),
        ("momentum", {"nesterov": True, "dampening": 0.1}, "dampening 0"),
        ("adam", {"amsgrad": 1}, "amsgrad must be True or False"),
        ("sgd", {"betas": (0.9, 0.99)}, "sgd has no hyperparameter 'betas'; its hyperparameters: lr, momentum"),
        ("adam", {"momentum": 0.9}, "adam has no hyperparameter 'momentum'"),
    ],
)
def test_bad_settings_are_refused(name: str, hparams: dict[str, object], words: str) -> None:
    with pytest.raises(OptimizerError) as err:
        make_optimizer(name, ["w"], **hparams)
    assert words in str(err.value)
    assert isinstance(err.value, PropscopeError)


def test_unknown_optimizer_lists_the_known_ones() -> None:
    with pytest.raises(OptimizerError, match="unknown optimizer 'lbfgs'; known optimizers: sgd, momentum, rmsprop, "
                                             "adam, adamw"):
        make_optimizer("lbfgs", ["w"])


def test_names_are_case_insensitive_and_none_means_default() -> None:
    opt = make_optimizer("AdamW", ["w"], lr=None, weight_decay=None)
    assert opt.name == "adamw" and opt.hparams["lr"] == 1e-3 and opt.hparams["weight_decay"] == 1e-2


def test_step_checks_the_parameter_count() -> None:
    opt = make_optimizer("adam", ["a", "b"])
    with pytest.raises(OptimizerError, match="expected 2 parameters"):
        opt.step([np.zeros(1)], [np.zeros(1)])
