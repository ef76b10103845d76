"""Parameters of ONNX files from torch's exporters under the module's state-dict names, with autograd's gradients.

The dynamo exporter's optimizer computes some weights at export and stores them under names of its own: a Linear's
weight transposed for a MatMul (`val_44`, recorded as folded from `q_proj.weight`), GPT-2's tied output layer as the
transpose of its token table, the position embeddings' rows at the traced positions (`embedding_1`), and, for a model
in eval mode, each batch norm folded into the convolution before it (`conv1.weight` then holds W·γ/√(σ² + ε) and the
new bias is `conv1.weight_bias`); the TorchScript exporter folds them too, recording nothing (`onnx::Conv_N`). The
reader names each after the module's parameter (the Linear's weight back in its (out, in) layout), marks what a
folded one holds, and folds a state dict's batch norms the same way when one loads (the TorchScript exporter's found
by their values, else refused).
The references are torch autograd of the module in float64 (for the folded batch norms, of the module with each
batch norm folded by torch's own `fuse_conv_bn_eval`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import open_model
from propscope.graph.readers.state_dict import apply_state_dict

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.torch

VOCAB = 48
CLOSE = 1e-7  # GPT-2's file against its module: measured up to 1.8e-9 relative (the graph as exported sums its
# products in another order), far below any difference a wrong name or layout would make


def _grads(s: Any) -> dict[str, np.ndarray]:
    s.run_to_end()
    return {n.name: np.asarray(s.backend.to_numpy(s.grad(n.name))) for n in s.graph.parameters}


def _state(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


# -- a CNN in eval mode: batch norms folded into the convolutions -------------------------------------------------
def _fused_reference(model: Any, graph: Any) -> Any:
    """`model` with each batch norm the file folded (by the reader's `folded_norm` record) folded by torch itself."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model)
    for node in graph.parameters:
        record = node.meta.get("folded_norm")
        if not record or record["part"] != "weight":
            continue
        conv_path, norm_path = record["conv_weight"].rsplit(".", 1)[0], record["batch_norm"]
        conv, norm = fused.get_submodule(conv_path), fused.get_submodule(norm_path)
        for path, module in ((conv_path, fuse_conv_bn_eval(conv, norm)), (norm_path, torch.nn.Identity())):
            parent, _, leaf = path.rpartition(".")
            setattr(fused.get_submodule(parent) if parent else fused, leaf, module)
    for p in fused.parameters():  # the bias torch's fold makes for a convolution without one takes no gradient
        p.requires_grad_(True)
    return fused


@pytest.mark.skipif(not zoo.has_torchvision(), reason="torchvision is not installed")
def test_resnet18_dynamo_folded_batch_norms_are_named_marked_and_refolded(tmp_path: Path) -> None:
    zoo.torchvision_models()
    model, (images,), labels = zoo._vision("resnet18")()
    path = zoo.export_onnx(model, (images,), tmp_path / "resnet18.onnx", True)
    opened = open_model(path)
    params = {n.name: n for n in opened.graph.parameters}
    folded = {k: n for k, n in params.items() if n.meta.get("folded_norm")}
    # every batch norm is folded: its conv's weight keeps the conv's name, the bias the fold made is the conv's bias
    assert len(folded) == 2 * 20 and "conv1.weight" in folded and "conv1.bias" in folded
    assert "conv1.weight_bias" not in params and folded["conv1.bias"].meta["file_name"] == "conv1.weight_bias"
    assert folded["conv1.weight"].meta["folded_norm"]["batch_norm"] == "bn1"
    assert "bn1" in folded["conv1.weight"].meta["holds"] and any("batch norm" in w for w in opened.warnings)
    fused = _fused_reference(model, opened.graph)
    reference = _state(fused)
    assert set(params) <= set(reference), sorted(set(params) - set(reference))
    for name in params:
        assert np.allclose(opened.arrays[name], reference[name], rtol=1e-6, atol=1e-9), name

    # a state dict of the unfolded module loads folded the same way, not its raw conv1.weight into the folded conv
    state = _state(model)
    filled, report = apply_state_dict(opened, state, "resnet18.pth")
    assert sorted(report.matched) == sorted(params) and not report.missing and not report.unexpected
    for name in folded:
        assert np.allclose(filled.arrays[name], reference[name], rtol=1e-9, atol=1e-12), name
    partial = {k: v for k, v in state.items() if not k.startswith("bn1.")}
    _, report = apply_state_dict(opened, partial, "partial.pth")
    assert any(m.startswith("conv1.weight (holds bn1 folded in: needs bn1.") for m in report.missing)

    # the gradients under those names are autograd's of the folded module (float64)
    s = open_session(path, dtype="float64", data={"x": images, "y": labels}, loss="cross_entropy")
    got = _grads(s)
    loss = torch.nn.functional.cross_entropy(fused(torch.from_numpy(images)), torch.from_numpy(labels))
    loss.backward()
    want = {k: p.grad.numpy() for k, p in fused.named_parameters() if p.grad is not None}
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for name, g in got.items():
        assert zoo.relative(g, want[name]) < 1e-9, name


# -- the TorchScript exporter's fold: nothing recorded, the batch norm matched by its values ------------------------
@pytest.mark.skipif(not zoo.has_torchvision(), reason="torchvision is not installed")
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])  # ε 1e-5 and 1e-3
def test_torchscript_folded_batch_norms_take_a_state_dict_folded_or_refuse_it(name: str, tmp_path: Path) -> None:
    zoo.torchvision_models()
    model, (images,), _ = zoo._vision(name)()
    path = zoo.export_onnx(model, (images,), tmp_path / f"{name}.onnx", False)
    opened = open_model(path)
    marked = {n.name: n for n in opened.graph.parameters if n.meta.get("export_folded")}
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert len(marked) == 2 * norms and "TrainingMode.PRESERVE" in " ".join(opened.warnings)
    assert all(n.meta["file_name"].startswith("onnx::Conv_") and "folded in" in n.meta["holds"]
               for n in marked.values())

    # a new head on the same backbone (transfer learning): the state dict's convolutions and batch norms load
    # folded, each batch norm found by its values with its ε, and the file computes the tuned module's output
    tuned = copy.deepcopy(model)
    head = [m for m in tuned.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.manual_seed(1)
    head.reset_parameters()
    filled, report = apply_state_dict(opened, _state(tuned), "tuned.pth")
    assert report.ok and not report.unexpected, report.summary()
    s = open_session(filled, dtype="float64", data={"x": images}, loss="none")
    s.run_to_end()
    got = np.asarray(s.backend.to_numpy(s.value(s.graph.outputs[0].name)))
    with torch.no_grad():
        want = tuned(torch.from_numpy(images)).numpy()
    assert zoo.relative(got, want) < 1e-9  # the raw convolutions loaded unfolded: off by the whole batch norm

    # other convolutions: which batch norm, which ε? refused in one line rather than loaded wrong
    state = _state(tuned)
    first = next(k for k in state if k.endswith(".weight") and state[k].ndim == 4)
    state[first] = state[first] * 1.5
    said = rf"1 convolution\(s\) \({first.rsplit('.', 1)[0]}\) with a batch norm the TorchScript exporter folded in"
    with pytest.raises(ModelFormatError, match=said + r".*TrainingMode\.PRESERVE"):
        apply_state_dict(opened, state, "other.pth")


# -- transformers: Linear weights stored transposed, a tied output layer, folded position rows ----------------------
def _gpt2() -> Any:
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    import transformers as tr

    torch.manual_seed(0)
    model = tr.GPT2LMHeadModel(tr.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=4, n_positions=32))
    model.config.use_cache = False
    return zoo._jitter(model).double().eval()


class _Logits(torch.nn.Module):  # type: ignore[misc]
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.m = model

    def forward(self, ids: Any) -> Any:
        return self.m(ids, attention_mask=torch.ones_like(ids)).logits


@pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is not installed")
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_gpt2_parameters_have_state_dict_names_and_autograds_gradients(dynamo: bool, tmp_path: Path) -> None:
    wrapped = _Logits(_gpt2())
    ids = np.random.default_rng(3).integers(0, VOCAB, (2, 8))
    path = zoo.export_onnx(wrapped, (ids,), tmp_path / "gpt2.onnx", dynamo, input_names=["input_ids"])
    s = open_session(path, dtype="float64", data={"input_ids": ids, "y": ids}, loss="cross_entropy",
                     per_token=True)
    reference = copy.deepcopy(wrapped)
    logits = reference(torch.from_numpy(ids))
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(ids).reshape(-1))
    loss.backward()
    want = {k: p.grad.numpy() for k, p in reference.named_parameters()}  # tied: lm_head.weight is wte.weight
    want["m.lm_head.weight"] = reference.m.lm_head.weight.grad.numpy()
    state = {**_state(reference), "m.lm_head.weight": reference.m.lm_head.weight.detach().numpy()}
    got = _grads(s)
    # the TorchScript exporter writes the output layer's matrix as a transposed copy of the table (`onnx::MatMul_N`):
    # read as the table itself, tied as in the module, whose gradient sums both uses (`naming.tied_copy`)
    kept = [k for k in ("m.transformer.wte.weight", "m.lm_head.weight") if k in got]
    assert len(kept) == 1 and zoo.relative(got[kept[0]], want["m.lm_head.weight"]) < CLOSE, kept
    for name, g in got.items():
        node = s.graph[name]
        assert name in state, (name, node.meta.get("file_name"))  # a state-dict name, never val_155 or embedding_1
        value = np.asarray(s.model.arrays[name])
        if value.shape == state[name].shape:  # the Linear weights are back in nn.Linear's (out, in) layout
            assert np.array_equal(value, state[name]), name
            assert zoo.relative(g, want[name]) < CLOSE, name
        else:  # the position embeddings' rows at the traced positions, folded by the dynamo exporter
            assert dynamo and node.meta["folded_from"] == name and value.shape == (1, 8, 32)
            assert np.array_equal(value[0], state[name][:8]) and zoo.relative(g[0], want[name][:8]) < CLOSE
    # the output layer reads the token table itself (tied, as in the module): one parameter, both uses' gradient
    lm_head = [n for n in s.graph.nodes if n.op.name == "linear" and n.module.endswith("lm_head")]
    assert len(lm_head) == 1 and lm_head[0].attrs["transpose_weight"]
    assert lm_head[0].inputs[1].op.name == "parameter"
    if dynamo:
        assert lm_head[0].inputs[1].name == "m.lm_head.weight"
        assert any(n.op.name == "embedding" and n.inputs[1] is lm_head[0].inputs[1] for n in s.graph.nodes)

    # a checkpoint as save_pretrained writes it (the tied table once, as transformer.wte.weight), and one of other
    # values: every tensor loads, the table under its other name, the position table's rows as the file picked them
    saved = {k: v for k, v in _state(reference).items() if k != "m.lm_head.weight"}
    filled, report = apply_state_dict(s.model, saved, "gpt2.safetensors")
    assert report.ok and not report.unexpected, report.summary()
    assert not [w for w in filled.warnings if w not in s.model.warnings]
    table = "m.lm_head.weight" if dynamo else "m.transformer.wte.weight"
    assert np.array_equal(filled.arrays[table], saved["m.transformer.wte.weight"])
    other = {k: v + 0.5 for k, v in saved.items()}
    filled, report = apply_state_dict(s.model, other, "other.safetensors")
    assert report.ok and not report.unexpected, report.summary()
    if dynamo:
        wpe = "m.transformer.wpe.weight"
        assert np.array_equal(filled.arrays[wpe][0], other[wpe][:8])
        assert any(w.startswith(f"{wpe}: the file holds 8 of its rows") for w in filled.warnings)
