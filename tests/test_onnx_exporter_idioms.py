"""How torch's ONNX exporters write two everyday modules, read back as the module is.

A Linear on a 3-D input (every transformer's) is written by both exporters as MatMul then Add of the bias: it reads
as one `linear` step holding the module's weight and bias, with autograd's gradients, as a `.pt2`'s Linear reads
(it was a `linear` with a zero bias constant, then an `add`). A model exported without `.eval()` keeps its dropouts
in training mode: each is the catalog's `dropout`, its mask drawn from a seed of its node as a `.pt2`'s is, said in a
warning (the file opened, but stepping stopped before the first one).
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytestmark = [pytest.mark.torch, pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is missing")]

VOCAB = 50


class _Logits(torch.nn.Module):  # type: ignore[misc]
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.m = model

    def forward(self, ids: Any) -> Any:
        return self.m(ids).logits


def _bert(train: bool) -> Any:
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    import transformers as tr

    torch.manual_seed(0)
    config = tr.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=37, max_position_embeddings=16, num_labels=3)
    model = zoo._jitter(_Logits(tr.BertForSequenceClassification(config))).double()  # no two biases equal
    return model.train(train)


def _export(model: Any, ids: np.ndarray, path: Path, dynamo: bool) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            torch.onnx.export(copy.deepcopy(model), (torch.from_numpy(ids),), str(path), dynamo=dynamo,
                              input_names=["input_ids"])
        finally:
            logging.disable(logging.NOTSET)
    return path


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_a_linear_on_tokens_is_one_step_with_its_bias_and_autograds_gradients(dynamo: bool, tmp_path: Path) -> None:
    model = _bert(train=False)
    ids = np.random.default_rng(0).integers(0, VOCAB, (2, 8))
    path = _export(model, ids, tmp_path / "bert.onnx", dynamo)
    graph = open_model(path).graph
    linears = [n for n in graph.ops if n.op.name == "linear"]
    # the 12 Linears on (batch, tokens, hidden) and the pooler and classifier (a Gemm): each one step with its bias
    assert len(linears) == 14
    assert all(n.inputs[2].op.name == "parameter" and n.inputs[2].name.endswith("bias") for n in linears)
    assert not any(n.op.name == "constant" and n.name.endswith("no_bias") for n in graph.leaves)
    assert not any(n.op.name == "add" and any(i.op.name == "parameter" and i.name.endswith("bias") for i in n.inputs)
                   for n in graph.ops)

    labels = np.array([0, 2])
    s = open_session(path, dtype="float64", data={"input_ids": ids, "y": labels}, loss="cross_entropy")
    s.run_to_end()
    reference = copy.deepcopy(model)
    torch.nn.functional.cross_entropy(reference(torch.from_numpy(ids)), torch.from_numpy(labels)).backward()
    want = {k: p.grad.numpy() for k, p in reference.named_parameters() if k.endswith("dense.bias")
            or k.endswith("query.bias")}
    got = {n.name: np.asarray(s.backend.to_numpy(s.grad(n.name))) for n in graph.parameters if n.name in want}
    assert len(got) >= 8 and set(got) <= set(want)
    # the dynamo exporter stores the attention's 1/√d as a float32 number in a float64 model: 2e-8 from it here
    close = 1e-7 if dynamo else 1e-9
    for name, g in got.items():
        assert zoo.relative(g, want[name]) < close, name


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dropouts_exported_in_training_mode_drop_with_a_seeded_mask(backend: str, tmp_path: Path) -> None:
    ids = np.random.default_rng(1).integers(0, VOCAB, (2, 8))
    path = _export(_bert(train=True), ids, tmp_path / "bert_train.onnx", dynamo=True)
    s = open_session(path, backend=backend, dtype="float64", data={"input_ids": ids}, loss="none")
    dropouts = [n for n in s.graph.ops if n.op.name == "dropout"]
    assert dropouts and all(n.attrs["training"] and n.attrs["p"] == pytest.approx(0.1) for n in dropouts)
    assert len({n.attrs["seed"] for n in dropouts}) == len(dropouts)  # each node its own mask
    assert sum("training mode" in w and "model.eval()" in w for w in s.model.warnings) == 1
    assert not any("not support" in w for w in s.model.warnings)
    s.run_to_end()
    assert s.at_end
    first = s.value(dropouts[0].name)
    dropped = first == 0
    assert 0.0 < dropped.mean() < 0.3  # p = 0.1 of the embeddings' 2·8·32 values, the rest scaled by 1/0.9
    again = open_session(path, backend=backend, dtype="float64", data={"input_ids": ids}, loss="none")
    again.run_to_end()
    np.testing.assert_array_equal(again.value(dropouts[0].name), first)  # the same mask every time it opens
