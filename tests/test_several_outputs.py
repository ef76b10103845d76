"""Models with several outputs (an auxiliary head, a question-answering model's start and end logits): the loss goes
on the one the user picks (the first by default, said once), and the others stay outputs, computed and shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from propscope.cli import main
from propscope.debugger import open_session
from propscope.graph import Graph, GraphError, Model
from propscope.graph.readers import save_model


def two_heads() -> Model:
    """x (5, 4) -> head `main` (5, 3) and head `aux` (5, 2), each a linear layer of its own."""
    rng = np.random.default_rng(0)
    g = Graph("two_heads")
    x = g.input("x", (5, 4))
    wa, ba = g.parameter("a.weight", (4, 3)), g.parameter("a.bias", (3,))
    wb, bb = g.parameter("b.weight", (4, 2)), g.parameter("b.bias", (2,))
    main_head = g.add("linear", x, wa, ba, name="main")
    aux = g.add("tanh", g.add("linear", x, wb, bb, name="aux_linear"), name="aux")
    g.set_outputs(main_head, aux)
    arrays = {n: rng.normal(size=s) for n, s in
              (("a.weight", (4, 3)), ("a.bias", (3,)), ("b.weight", (4, 2)), ("b.bias", (2,)))}
    return Model(g, arrays, batch={"x": rng.normal(size=(5, 4))})


def test_the_loss_goes_on_the_first_output_and_the_others_stay_outputs() -> None:
    model = two_heads()
    assert "2 outputs: main (5, 3), aux (5, 2); the loss goes on the first, 'main'" in model.outputs_note
    s = open_session(model, loss="mse", dtype="float64")
    assert [n.name for n in s.graph.outputs] == ["loss", "aux"]
    s.run_to_end()
    assert s.value("aux") is not None  # the other head is computed and shown
    assert s.grad("a.weight") is not None and s.grad("b.weight") is None


@pytest.mark.parametrize("output", ["aux", 1, "1"])
def test_output_picks_the_head_the_loss_goes_on(output: str | int) -> None:
    s = open_session(two_heads(), loss="mse", dtype="float64", output=output)
    assert [n.name for n in s.graph.outputs] == ["loss", "main"]
    assert s.prediction_node.name == "aux"
    s.run_to_end()
    assert s.grad("a.weight") is None
    # mse on tanh(x W + b): the hand-written gradient, from the batch's own numbers
    x, y = s.batch["x"], s.batch["y"]
    w, b = s.model.arrays["b.weight"], s.model.arrays["b.bias"]
    h = np.tanh(x @ w + b)
    dz = 2 * (h - y) / h.size * (1 - h**2)
    np.testing.assert_allclose(s.grad("b.weight"), x.T @ dz, rtol=1e-12)
    np.testing.assert_allclose(s.grad("b.bias"), dz.sum(0), rtol=1e-12)


def test_a_loss_change_keeps_the_chosen_output() -> None:
    s = open_session(two_heads(), loss="mse", dtype="float64", output="aux")
    t, _ = s.with_loss("sse")
    assert t.prediction_node.name == "aux"


@pytest.mark.parametrize("output, says", [("nope", "no output named 'nope'"), (2, "output 2 does not exist")])
def test_an_output_that_is_not_there_is_one_line_naming_the_outputs(output: str | int, says: str) -> None:
    with pytest.raises(GraphError) as err:
        open_session(two_heads(), loss="mse", output=output)
    assert says in str(err.value) and "2 outputs: main (5, 3), aux (5, 2)" in str(err.value)


def test_one_output_has_no_note() -> None:
    model = two_heads()
    graph = model.graph.copy()
    graph.set_outputs("main")
    assert model.with_graph(graph).outputs_note == ""


def test_the_command_line_says_where_the_loss_went_and_takes_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "two_heads.propscope"
    save_model(two_heads(), path)
    assert main(["grads", str(path), "--loss", "mse", "--dtype", "float64"]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == ("propscope: note: 2 outputs: main (5, 3), aux (5, 2); the loss goes on the first, 'main' "
                           "(--output NAME picks another)")
    assert "b.weight" in out and "no gradient" in out
    assert main(["gradcheck", str(path), "--loss", "mse", "--output", "aux"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # chosen: nothing to say
    assert main(["grads", str(path), "--loss", "mse", "--output", "x2"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("propscope: error: ") and "no output named 'x2'" in err and len(err.splitlines()) == 1


def test_a_live_module_returning_a_tuple_takes_its_loss_on_the_output_picked() -> None:
    torch = pytest.importorskip("torch")

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.a(x), torch.sigmoid(self.b(x))

    torch.manual_seed(0)
    module = TwoHeads().double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.randn(5, 2, dtype=torch.float64)
    s = open_session(module, inputs=x, data={"y": y}, loss="mse", output=1)
    s.run_to_end()
    loss = torch.nn.functional.mse_loss(module(x)[1], y)
    loss.backward()
    assert float(s.value("loss")) == pytest.approx(float(loss), rel=1e-12)
    np.testing.assert_allclose(s.grad("b.weight"), module.b.weight.grad.numpy(), rtol=1e-10)
    assert s.grad("a.weight") is None


def test_a_live_module_returning_a_namedtuple_or_a_dict_names_its_outputs_so() -> None:
    """GoogLeNet in training mode returns a namedtuple (logits, aux_logits2, aux_logits1): torch cannot serialise a
    namedtuple class it has no name for, so the outputs are handed over flat, named as the module named them."""
    torch = pytest.importorskip("torch")
    from collections import namedtuple

    Heads = namedtuple("Heads", ["logits", "aux"])

    class NamedHeads(torch.nn.Module):
        def __init__(self, as_dict: bool) -> None:
            super().__init__()
            self.a, self.b, self.as_dict = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3), as_dict

        def forward(self, x: torch.Tensor) -> object:
            heads = Heads(self.a(x), self.b(x) * 2)
            return {"scores": {"main": heads.logits, "aux": heads.aux}} if self.as_dict else heads

    torch.manual_seed(0)
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0])
    for as_dict, main_name, aux_name in ((False, "logits", "aux"), (True, "scores.main", "scores.aux")):
        module = NamedHeads(as_dict).double()
        s = open_session(module, inputs=x, data={"y": y}, loss="cross_entropy")
        assert f"2 outputs: {main_name} (5, 3), {aux_name} (5, 3); the loss goes on the first, {main_name!r}" \
            in s.model.outputs_note
        assert type(module) is NamedHeads  # the module's class is given back
        s = open_session(module, inputs=x, data={"y": y}, loss="cross_entropy", output=aux_name)
        s.run_to_end()
        out = module(x)
        loss = torch.nn.functional.cross_entropy(out["scores"]["aux"] if as_dict else out.aux, y)
        loss.backward()
        np.testing.assert_allclose(s.grad("b.weight"), module.b.weight.grad.numpy(), rtol=1e-10)
        assert s.grad("a.weight") is None


def test_an_onnx_files_outputs_answer_to_the_names_the_file_gives_them(tmp_path: Path) -> None:
    """A question-answering model's start_logits and end_logits: the nodes are named by their module (qa.Gemm), the
    outputs keep the file's names, as Netron shows them."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), name)
               for name in ("qa.start.weight", "qa.end.weight")]
    nodes = [helper.make_node("MatMul", ["x", "qa.start.weight"], ["start_logits"], name="/qa/start/MatMul"),
             helper.make_node("MatMul", ["x", "qa.end.weight"], ["end_logits"], name="/qa/end/MatMul")]
    graph = helper.make_graph(
        nodes, "qa", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("start_logits", "end_logits")],
        weights)
    path = tmp_path / "qa.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    s = open_session(str(path), loss="cross_entropy", output="end_logits", dtype="float64")
    assert [n.name for n in s.graph.outputs] == ["loss", "qa.start.MatMul"]
    assert s.prediction_node.name == "qa.end.MatMul"
    s.run_to_end()
    assert s.grad("qa.start.weight") is None and s.grad("qa.end.weight") is not None
    assert "2 outputs: start_logits (2, 3), end_logits (2, 3)" in open_session(str(path)).model.outputs_note


def test_a_pt2_files_outputs_are_named_as_its_forward_returned_them(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class DictHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> dict[str, object]:
            return {"main": self.a(x), "aux": {"z": self.b(x)}, "steps": 3}

    path = tmp_path / "heads.pt2"
    torch.export.save(torch.export.export(DictHeads(), (torch.randn(2, 4),)), str(path))
    s = open_session(str(path), loss="mse", output="aux.z")
    assert s.prediction_node.name == "linear_1"
    assert "2 outputs: aux.z (2, 2), main (2, 3)" in s.model.outputs_note


@pytest.mark.parametrize("spec", [
    None, 7, "not json", "[1]", '[1, {"type": "builtins.dict", "context": "[\\"a\\"]", "children_spec": 5}]',
    '[1, {"type": "builtins.dict", "context": "[\\"a\\", \\"b\\"]", "children_spec": [{"type": null}]}]',
    "[1, " + '{"type": "builtins.tuple", "context": null, "children_spec": [' * 40 + "]}" * 40 + "]",
])
def test_an_odd_output_spec_names_nothing_and_opens_as_before(spec: object) -> None:
    from propscope.graph.readers._aten import returned_names

    assert returned_names({"module_call_graph": [{"signature": {"out_spec": spec}}]}) is None
    assert returned_names({"module_call_graph": "x"}) is None and returned_names({}) is None


def test_a_session_moves_its_loss_to_another_output() -> None:
    """What Debug ▸ Loss on output does in the app: the same loss on another head, a target drawn where the data's
    does not fit it, the parameters as they were."""
    s = open_session(two_heads(), loss="mse", dtype="float64")
    s.params["b.bias"] = s.params["b.bias"] + 1.0
    t, drawn = s.with_output("aux")
    assert drawn and t.prediction_node.name == "aux" and t.loss_name == "mse" and t.batch["y"].shape == (5, 2)
    np.testing.assert_array_equal(t.params["b.bias"], s.params["b.bias"])
    back, drawn = t.with_output(1)  # positions count in the model's own order, whatever the session's
    assert back.prediction_node.name == "aux" and drawn  # a drawn target is drawn again for the output it meets
    u, drawn = t.with_output("main")
    assert u.prediction_node.name == "main" and drawn and u.batch["y"].shape == (5, 3)
    y = np.arange(10.0).reshape(5, 2)
    model = two_heads()
    mine = open_session(model, loss="mse", dtype="float64", output="aux", data={"x": model.batch["x"], "y": y})
    v, drawn = mine.with_loss("sse")  # the user's own target stays where it fits
    assert not drawn and np.array_equal(v.batch["y"], y)


def test_a_question_answering_checkpoint_gives_start_and_end_logits(tmp_path: Path) -> None:
    """BertForQuestionAnswering's folder: both spans' scores as outputs, cross-entropy by default (a class per
    position), on the end logits when asked, with autograd's gradient."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from propscope.graph.readers import _torchvision

    _torchvision.models()  # transformers may import torchvision (a CUDA build beside a CPU torch on some machines)
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=24, max_position_embeddings=16)
    transformers.BertForQuestionAnswering(config).save_pretrained(tmp_path / "qa")
    s = open_session(tmp_path / "qa", output="end_logits", dtype="float64")
    assert s.loss_name == "cross_entropy" and "start_logits" in s.model.outputs_note
    s.run_to_end()
    model = transformers.BertForQuestionAnswering.from_pretrained(tmp_path / "qa").double().eval()
    ids = torch.from_numpy(s.batch["input_ids"].astype(np.int64))
    loss = torch.nn.functional.cross_entropy(model(input_ids=ids).end_logits, torch.from_numpy(s.batch["y"]).long())
    loss.backward()
    assert float(s.value("loss")) == pytest.approx(float(loss), rel=1e-10)
    np.testing.assert_allclose(s.grad("qa_outputs.weight"), model.qa_outputs.weight.grad.numpy(), rtol=1e-8,
                               atol=1e-12)


def test_cross_entropy_on_token_logits_says_which_axis_holds_the_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A language model exported by hand gives (batch, tokens, vocabulary) logits; cross-entropy takes axis 1 as
    torch's does, which there is the tokens: the command says so once, on stderr."""
    g = Graph("lm")
    w = g.parameter("head.weight", (16, 50))
    g.set_outputs(g.add("matmul", g.input("h", (1, 8, 16)), w, name="logits"))
    path = tmp_path / "lm.propscope"
    rng = np.random.default_rng(0)
    save_model(Model(g, {"head.weight": rng.normal(size=(16, 50))}, batch={"h": rng.normal(size=(1, 8, 16))}), path)
    assert main(["grads", str(path), "--loss", "cross_entropy"]) == 0
    err = capsys.readouterr().err
    assert "cross-entropy takes the classes on axis 1, as torch's does: (1, 8, 50) is read as 8 classes" in err
    assert main(["grads", str(path), "--loss", "mse"]) == 0
    assert "classes on axis 1" not in capsys.readouterr().err
