"""The architectures engineers bring, exported as users export them, opened and stepped end to end.

Each model of `zoo.ARCHITECTURES` (torchvision and transformers constructors with random weights, and a few
standard patterns built from torch.nn) is exported with `torch.export.save`, as is and after
`run_decompositions()`. propscope opens the file with no unsupported op, steps to the end of the backward pass on
the NumPy backend (hand-written derivatives) and on the torch backend, and must give torch autograd's loss, every
parameter gradient and the input gradient to 1e-9 relative, in float64.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow]

FORMS = ("as_is", "decomposed")

ARCHITECTURES = zoo.params()


class Exported:
    """Each architecture built once and exported in both forms, on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def file(self, name: str, form: str) -> Path:
        path = self.folder / f"{name}.{form}.pt2"
        if not path.exists():
            model, inputs, _ = zoo.built(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.export(model, tuple(torch.from_numpy(a) for a in inputs))
                if form == "decomposed":
                    program = program.run_decompositions()
                torch.export.save(program, str(path))
        return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return Exported(tmp_path_factory.mktemp("architectures"))


NOISE_FLOOR = 1e-6  # of the model's largest gradient: below it a gradient is rounding (see `close`)


def close(got: np.ndarray | None, want: np.ndarray, what: str, scale: float = 0.0) -> None:
    """`got` within 1e-9 of `want`, relative to `want`'s largest entry, or to NOISE_FLOOR × `scale` (the model's
    largest gradient) where `want` is smaller: a parameter whose true gradient is 0 (an attention key's bias, which
    softmax cancels) comes out of both autograd and propscope as 1e-20 rounding noise, whose ratio means nothing."""
    assert got is not None, f"no gradient for {what}"
    peak = float(np.max(np.abs(want), initial=0.0))
    diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want), initial=0.0))
    err = diff / max(peak, NOISE_FLOOR * scale, 1e-12)
    assert err <= 1e-9, f"{what}: relative difference {err:.3g} (largest gradient {peak:.3g}, model's {scale:.3g})"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_opens_with_every_op_supported(name: str, form: str, exported: Exported) -> None:
    model = open_model(exported.file(name, form))
    unsupported = sorted({f"{n.meta.get('original_op', '?')} ({n.meta.get('reason', '')})" for n in model.graph
                          if n.op.name == "unsupported"})
    assert not unsupported, f"{name} ({form}): unsupported ops {unsupported}"


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_steps_to_the_end_with_autograds_numbers(name: str, form: str, backend: str, exported: Exported) -> None:
    path = exported.file(name, form)
    _, inputs, y = zoo.built(name)
    graph_inputs = [n.name for n in open_model(path).graph.inputs]
    assert len(graph_inputs) == len(inputs), f"inputs {graph_inputs}"
    data = {**dict(zip(graph_inputs, inputs, strict=True)), "y": y}
    s = open_session(path, backend=backend, dtype="float64", data=data, loss="cross_entropy")
    s.run_to_end()
    assert s.at_end
    # the truth is torch autograd on the program as exported: after run_decompositions() that is the decomposed
    # math (hardswish as clamp and division), whose float64 rounding differs from the fused kernels' in the 1e-9s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.load(str(path)).module()
    loss, grads, input_grads = zoo.autograd_reference(program, inputs, y)
    got_loss = float(s.backend.to_numpy(s.value(s.loss_node.name)))
    assert abs(got_loss - loss) <= 1e-9 * max(1.0, abs(loss)), f"loss {got_loss} != {loss}"
    params = {n.name for n in s.graph.leaves if n.op.name == "parameter"}
    scale = max((float(np.max(np.abs(g), initial=0.0)) for g in grads.values()), default=0.0)
    for param, grad in grads.items():
        if param in params:
            close(s.backend.to_numpy(s.grad(param)), grad, param, scale)
    # a parameter the loss does not reach (CLIP's post_layernorm feeds only the unused pooled output) has no
    # autograd gradient; propscope must give it none either, not a made-up one
    unreached = sorted(p for p in params - set(grads) if s.gradient_flows(p) or s.grad(p) is not None)
    assert not unreached, f"parameters that autograd's loss does not reach but propscope's does: {unreached}"
    for name_in, grad in zip(graph_inputs, input_grads, strict=True):
        if grad is not None:
            close(s.backend.to_numpy(s.grad(name_in)), grad, f"input {name_in}")


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_numpy_and_torch_agree_on_every_node(name: str, exported: Exported) -> None:
    """Every value and every gradient of the whole pass, node by node: hand-written derivatives against autograd."""
    from propscope.backends import get_backend
    from propscope.debugger.compare import compare_backends

    path = exported.file(name, "as_is")
    _, inputs, y = zoo.built(name)
    graph_inputs = [n.name for n in open_model(path).graph.inputs]
    s = open_session(path, dtype="float64", data={**dict(zip(graph_inputs, inputs, strict=True)), "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    result = compare_backends(s, get_backend("torch", "float64"))
    assert result.passed, [d for d in result.failures][:5]
