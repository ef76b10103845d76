"""A model held in Python (`open_session(module, inputs=...)`, `propscope.show`): traced with torch.export on the
inputs it is called with, stepped on both backends with autograd's gradients, and the module left as it was."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import propscope
from propscope.graph.datasets import DataError
from propscope.graph.errors import ModelFormatError

torch = pytest.importorskip("torch")
nn = torch.nn

import zoo  # noqa: E402  (after the importorskip: zoo builds torch models)

BACKENDS = ("numpy", "torch")


def _small_cnn() -> Any:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def _autograd(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], y: np.ndarray,
              flatten: bool = False) -> tuple[float, dict[str, np.ndarray]]:
    """torch's cross-entropy loss and every parameter's gradient, on a copy (the module is the test's reference)."""
    import copy

    m = copy.deepcopy(module)
    out = m(*args, **kwargs)
    out = getattr(out, "logits", out)
    out = out.reshape(-1, out.shape[-1]) if flatten else out
    loss = nn.functional.cross_entropy(out, torch.from_numpy(y))
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in m.named_parameters() if p.grad is not None}


def _loss(s: Any) -> float:
    return float(s.backend.to_numpy(s.value(s.loss_node.name)))


def _state(module: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_a_module_steps_with_autograds_gradients_and_is_left_as_it_was(backend: str, training: bool) -> None:
    module = _small_cnn().double().train(training)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = np.array([0, 1, 2, 0, 1])
    before, cls = _state(module), type(module)
    s = propscope.open_session(module, inputs=x, data={"y": y}, loss="cross_entropy", dtype="float64",
                               backend=backend)
    assert s.name == "Sequential"
    assert f"({'training' if training else 'evaluation'} mode)" in s.model.description
    np.testing.assert_array_equal(s.batch["input"], x.numpy())  # the inputs are the batch
    s.run_to_end()
    loss, grads = _autograd(module, (x,), {}, y)
    assert _loss(s) == pytest.approx(loss, rel=1e-12)
    assert set(grads) <= set(s.parameters_numpy())  # the state dict's names
    # a parameter's own scale, floored at 1e-6 of the largest gradient: the conv bias before a training-mode batch
    # norm has a true-zero gradient (the batch mean takes it away), rounding noise on both sides
    largest = max(float(np.abs(g).max()) for g in grads.values())
    for name, want in grads.items():
        error = float(np.abs(s.backend.to_numpy(s.grad(name)) - want).max())
        assert error <= 1e-9 * max(float(np.abs(want).max()), 1e-6 * largest), name
    assert type(module) is cls and module.training is training
    for name, value in module.state_dict().items():  # running statistics not updated by the trace
        assert torch.equal(value, before[name]), name


def test_numpy_inputs_take_the_modules_dtype_and_data_x_replaces_them() -> None:
    module = _small_cnn().eval()  # float32
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))  # float64
    s = propscope.open_session(module, inputs=x, dtype="float64")
    assert s.loss_name is None  # a plain module gets no loss unless asked
    s.run_to_end()
    with torch.no_grad():
        want = module(torch.from_numpy(x).float()).double().numpy()
    assert zoo.relative(s.backend.to_numpy(s.value(s.graph.outputs[0].name)), want) < 1e-6
    other = np.ones((3, 1, 8, 8))
    assert s.backend.dtype == "float64"  # asked for
    assert propscope.open_session(module, inputs=x).backend.dtype == "float32"  # the module's own
    assert propscope.open_session(_small_cnn().double(), inputs=x).backend.dtype == "float64"
    labels = torch.tensor([0, 1, 2])  # a notebook's labels, as a tensor
    r = propscope.open_session(module, inputs=x, data={"x": other, "y": labels}, loss="cross_entropy")
    assert r.batch["input"].shape == (3, 1, 8, 8) and "x" not in r.batch
    np.testing.assert_array_equal(r.batch["y"], labels.numpy())


@pytest.mark.skipif(not zoo.has_torchvision(), reason="torchvision is not installed")
def test_torchvision_resnet18_held_in_python() -> None:
    module, (images,), y = zoo.built("resnet18")  # torchvision's constructor, random weights, float64, eval
    s = propscope.open_session(module, inputs=images, data={"y": y}, loss="cross_entropy", dtype="float64")
    assert not s.model.unsupported_ops
    s.run_to_end()
    loss, grads, _ = zoo.autograd_reference(module, (images,), y)
    assert _loss(s) == pytest.approx(loss, rel=1e-10)
    for name in ("conv1.weight", "layer1.0.bn1.weight", "layer4.1.conv2.weight", "fc.bias"):
        assert zoo.relative(s.grad(name), grads[name]) < 1e-9, name


def test_numpy_inputs_go_where_the_modules_weights_are() -> None:
    """A module on another device (CUDA; here torch's meta device, which needs no GPU) gets its NumPy inputs there."""
    from propscope.graph.readers import torch_module

    with torch.device("meta"):
        module = _small_cnn()
    args, _ = torch_module._arguments(torch, module, np.ones((2, 1, 8, 8)), "Sequential")
    assert args[0].device.type == "meta" and args[0].dtype == torch.float32


@pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is not installed")
def test_a_transformers_base_model_positional_ids_and_token_labels() -> None:
    """A base model (no key/value cache returned), ids given positionally (named input_ids, after the model's
    forward), and a language model's (B, T) labels for its logits read a row per token."""
    zoo.torchvision_models()
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2, attn_implementation="eager")
    ids = torch.from_numpy(np.random.default_rng(3).integers(0, 40, (2, 8)))
    base = propscope.open_session(GPT2Model(config).eval(), inputs={"input_ids": ids})
    assert base.loss_name is None and base.graph.outputs[0].shape == (2, 8, 16)  # the hidden states alone
    labels = torch.from_numpy(np.random.default_rng(4).integers(0, 40, (2, 8)))
    s = propscope.open_session(GPT2LMHeadModel(config).eval(), inputs=ids, data={"y": labels})
    assert s.graph.inputs[0].name == "input_ids"
    np.testing.assert_array_equal(s.batch["y"], labels.numpy().reshape(-1))


@pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is not installed")
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_transformers_model_gives_its_token_logits_and_keeps_its_class(backend: str) -> None:
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, attn_implementation="eager")
    module = GPT2LMHeadModel(config).double().eval()
    ids = torch.from_numpy(np.random.default_rng(3).integers(0, 40, (2, 8)))
    s = propscope.open_session(module, inputs={"input_ids": ids}, dtype="float64", backend=backend)
    assert type(module) is GPT2LMHeadModel  # its class given back after the trace
    assert s.loss_name == "cross_entropy"  # token logits, a row per token, as a checkpoint folder opens
    assert s.batch["y"].shape == (16,)
    s.run_to_end()
    loss, grads = _autograd(module, (), {"input_ids": ids}, s.batch["y"].astype(np.int64), flatten=True)
    assert _loss(s) == pytest.approx(loss, rel=1e-10)
    for name in ("transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_proj.bias", "transformer.ln_f.weight"):
        assert zoo.relative(s.grad(name), grads[name]) < 1e-9, name
    # the tied embedding answers to both its names, with the gradient of both its uses
    assert s.model.aliases == {"transformer.wte.weight": "lm_head.weight"}
    assert zoo.relative(s.grad("transformer.wte.weight"), grads["transformer.wte.weight"]) < 1e-9


def test_an_exported_program_opens_with_its_own_inputs() -> None:
    module = _small_cnn().eval()
    x = torch.randn(2, 1, 8, 8)
    s = propscope.open_session(torch.export.export(module, (x,)))
    np.testing.assert_array_equal(s.batch["input"], x.numpy())
    with pytest.raises(ModelFormatError, match=r"inputs= is for an nn\.Module"):
        propscope.open_session(torch.export.export(module, (x,)), inputs=x)


class _DataDependent(nn.Module):
    """A size only the data gives, decided on in Python: the path these inputs take answers it with the size the run
    gave (`readers/decisions.py`); the `nonzero` that made it, an op propscope cannot run whose values nothing reads,
    is left out of the graph, so stepping runs to the end."""

    def forward(self, x: Any) -> Any:
        n = x.nonzero().shape[0]
        return x * 2 if n > 2 else -x


def test_what_cannot_be_traced_says_so_in_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.warns(UserWarning, match=r"decided by tensor values 1 time\(s\).*→ a size of \d"):
        s = propscope.open_session(_DataDependent(), inputs=torch.randn(3))
    assert any("left out" in w and "nonzero (aten.nonzero)" in w for w in s.model.warnings)
    assert not any("stepping stops" in w for w in s.model.warnings) and "nonzero" not in s.graph
    s.run_to_end()
    assert s.at_end
    assert "torch.export" not in capfd.readouterr().err  # torch's partial graph and its warnings held back
    with pytest.raises(ModelFormatError, match=r"^Sequential: a module is traced on the inputs it is called with"):
        propscope.open_session(_small_cnn())
    with pytest.raises(ModelFormatError, match="not numbers"):
        propscope.open_session(_small_cnn(), inputs=np.array(["a"]))
    with pytest.raises(DataError, match="inputs= is for a torch module"):
        propscope.open_session("xor", inputs=np.zeros((4, 2)))


def test_grads_of_a_module_in_python() -> None:
    """propscope.grads: the gradient flow table of a module handed over with its inputs, or of a session."""
    torch.manual_seed(0)
    deep = nn.Sequential(*[layer for _ in range(8) for layer in (nn.Linear(8, 8), nn.Sigmoid())], nn.Linear(8, 3))
    x = np.random.default_rng(0).standard_normal((16, 8))
    rows = propscope.grads(deep, inputs=x, loss="cross_entropy", view="activations")
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else rows  # a DataFrame where pandas is installed
    assert [r["module"] for r in records] == [str(i) for i in range(17)]
    assert records[0]["flag"] == "vanishing" and records[-1]["flag"] == ""  # sigmoids shrink it towards the input
    s = propscope.open_session(deep, inputs=x, loss="cross_entropy")
    params = propscope.grads(s)
    assert s.cursor == 0  # the pass is computed, the cursor stays
    assert len(params) == 18 and {"parameter", "norm", "ratio", "flag"} <= set(
        params.columns if hasattr(params, "columns") else params[0])
    with pytest.raises(TypeError, match="loss"):
        propscope.grads(s, loss="mse")


class _WithConstants(nn.Module):
    """A half-precision buffer and a tensor attribute torch.export lifts to a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("scale", torch.full((3,), 0.5, dtype=torch.float16))
        self.offset = torch.arange(3.0)

    def forward(self, x: Any) -> Any:
        return self.fc(x) * self.scale.float() + self.offset


@pytest.mark.parametrize("name", ["resnet18", "gpt2", "lstm_lm", "constants"])
def test_a_program_in_memory_reads_as_its_saved_archive(name: str) -> None:
    """The in-memory path (torch's serializer, tensors copied from the program) and the archive a user saves give
    the same Model, node for node and array for array."""
    from propscope.graph.readers import torch_export

    if name == "constants":
        torch.manual_seed(0)
        module, inputs = _WithConstants(), (np.ones((2, 4), dtype=np.float32),)
    else:
        if not zoo.NEEDS[zoo.ARCHITECTURES[name][1]]():
            pytest.skip(f"{zoo.ARCHITECTURES[name][1]} is not installed")
        module, inputs, _ = zoo.built(name)
    program = torch.export.export(module, tuple(torch.from_numpy(a) for a in inputs))
    memory, saved = torch_export.open_program(program, name), torch_export._open_saved(program, name)
    assert [(n.name, n.op.name, n.shape, [i.name for i in n.inputs], repr(n.attrs), n.meta)
            for n in memory.graph.nodes] == \
           [(n.name, n.op.name, n.shape, [i.name for i in n.inputs], repr(n.attrs), n.meta) for n in saved.graph.nodes]
    assert memory.arrays.keys() == saved.arrays.keys()
    for key, value in memory.arrays.items():
        assert value.dtype == saved.arrays[key].dtype and np.array_equal(value, saved.arrays[key]), key
    assert memory.batch.keys() == saved.batch.keys() and memory.warnings == saved.warnings
    for key, value in memory.batch.items():
        assert value.dtype == saved.batch[key].dtype and np.array_equal(value, saved.batch[key]), key


def test_the_session_holds_copies_not_the_modules_own_weights() -> None:
    module = _small_cnn().eval()
    s = propscope.open_session(module, inputs=np.ones((2, 1, 8, 8), dtype=np.float32))
    kept = s.parameters_numpy()["4.weight"].copy()
    with torch.no_grad():
        module[4].weight.add_(1.0)  # the user goes on training their module
    np.testing.assert_array_equal(s.parameters_numpy()["4.weight"], kept)
