"""The gradient through depth (debugger/grad_flow.py `activation_flow`, `propscope grads --activations`): ∂L/∂h at
every module output, in forward order, flagged against the activations nearest the loss; checked against torch
autograd on the same weights."""

from __future__ import annotations

import io
import itertools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.backends import get_backend
from propscope.cli import main
from propscope.debugger import open_session
from propscope.debugger.grad_flow import ACTIVATION_ROWS, activation_flow, module_outputs
from propscope.debugger.repl import DebuggerShell
from propscope.debugger.session import Session
from propscope.graph.errors import PropscopeError
from propscope.graph.ir import Graph
from propscope.graph.model import Model

WIDTH, BATCH, CLASSES, LAYERS = 8, 6, 3, 10


def deep_mlp(residual: bool, layers: int = LAYERS, scale: float = 0.3) -> Model:
    """`layers` blocks `layer{i}` of a linear layer and a sigmoid (plus the block's input, `residual`), then a linear
    head. Small weights: without the skips, each block multiplies the error on its way back by σ' · W ≲ 0.1."""
    rng = np.random.default_rng(0)
    g = Graph("residual" if residual else "deep")
    h = g.input("x", (BATCH, WIDTH))
    arrays: dict[str, np.ndarray] = {}
    for i in range(layers):
        m = f"layer{i}"
        w, b = g.parameter(f"{m}.weight", (WIDTH, WIDTH), module=m), g.parameter(f"{m}.bias", (WIDTH,), module=m)
        arrays[w.name] = scale * rng.standard_normal((WIDTH, WIDTH))
        arrays[b.name] = 0.1 * rng.standard_normal(WIDTH)
        a = g.add("sigmoid", g.add("linear", h, w, b, name=f"{m}.linear", module=m), name=f"{m}.sigmoid", module=m)
        h = g.add("add", h, a, name=f"{m}.skip", module=m) if residual else a
    w, b = g.parameter("head.weight", (WIDTH, CLASSES), module="head"), g.parameter("head.bias", (CLASSES,),
                                                                                    module="head")
    arrays[w.name], arrays[b.name] = rng.standard_normal((WIDTH, CLASSES)), np.zeros(CLASSES)
    g.set_outputs(g.add("linear", h, w, b, name="head.linear", module="head"))
    return Model(g, arrays, batch=batch(), loss="cross_entropy")


def batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((BATCH, WIDTH)), "y": rng.integers(0, CLASSES, BATCH)}


def session(model: Model, backend: str = "numpy") -> Session:
    return Session(model, get_backend(backend, "float64"), batch(), "cross_entropy")


def final_grad(s: Session, name: str) -> np.ndarray:
    """The gradient the whole backward pass left at `name`, as the trace holds it."""
    grad = s.trace.grad(name, len(s.steps))
    assert grad is not None, name
    return np.asarray(s.backend.to_numpy(grad))


def test_a_deep_sigmoid_mlp_loses_its_gradient_layer_by_layer() -> None:
    s = session(deep_mlp(residual=False))
    flow = activation_flow(s)
    assert s.cursor == 0  # the pass ran in the trace, the cursor stayed
    # no module nests another: the level below the blocks is every op, 21 rows, within ACTIVATION_ROWS
    assert flow.depth == 2 and len(flow.rows) == 2 * LAYERS + 1 <= ACTIVATION_ROWS
    assert [r.name for r in flow.rows][:3] == ["layer0.linear", "layer0.sigmoid", "layer1.linear"]
    assert [r.order for r in flow.rows] == list(range(len(flow.rows)))  # each its forward step
    sigmoids = [r for r in flow.rows if r.name.endswith(".sigmoid")]
    rms = [r.rms for r in sigmoids]
    assert all(a < b / 3 for a, b in itertools.pairwise(rms)), rms  # shrinks at every layer back
    assert sigmoids[0].verdict == "vanishing" and sigmoids[-1].verdict == ""
    assert rms[0] < 1e-3 * flow.reference_rms
    assert flow.rows[-1].name == "head.linear" and flow.rows[-1].verdict == ""
    assert not any(r.verdict in ("exploding", "not finite", "no gradient") for r in flow.rows)
    assert flow.summary().startswith(f"{len(flow.rows)} activations, loss ")
    assert "vanishing (layer0.linear, layer0.sigmoid, layer1.linear" in flow.summary()
    for r in flow.rows:  # read from the trace: the gradient the backward pass left
        g = final_grad(s, r.name)
        assert r.norm == pytest.approx(float(np.linalg.norm(g)), rel=1e-12)
        assert r.rms == pytest.approx(float(np.linalg.norm(g)) / np.sqrt(g.size), rel=1e-12)
        assert r.largest == pytest.approx(float(np.max(np.abs(g))), rel=1e-12)


def test_the_skips_of_a_residual_net_keep_it() -> None:
    flow = activation_flow(session(deep_mlp(residual=True)))
    assert not flow.flagged, flow.text(flagged_only=True)
    skips = [r.rms for r in flow.rows if r.name.endswith(".skip")]
    assert len(skips) == LAYERS and max(skips) < 3 * min(skips)  # the same error reaches every block
    plain = activation_flow(session(deep_mlp(residual=False)))
    first_plain = next(r for r in plain.rows if r.name == "layer0.sigmoid")
    first_skip = next(r for r in flow.rows if r.name == "layer0.skip")
    assert first_skip.rms > 1e3 * first_plain.rms


@pytest.mark.torch
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_the_numbers_are_autograds(residual: bool, backend: str) -> None:
    """The same network in torch, each intermediate kept with retain_grad: ‖∂L/∂h‖, RMS and max |∂L/∂h| agree to
    1e-9 in float64 on both backends."""
    import torch

    model, data = deep_mlp(residual), batch()
    flow = activation_flow(session(model, backend))
    p = {k: torch.tensor(v, requires_grad=True) for k, v in model.arrays.items()}
    kept: dict[str, Any] = {}

    def keep(name: str, t: Any) -> Any:
        t.retain_grad()
        kept[name] = t
        return t

    h = torch.tensor(data["x"])
    for i in range(LAYERS):
        m = f"layer{i}"
        z = keep(f"{m}.linear", h @ p[f"{m}.weight"] + p[f"{m}.bias"])
        a = keep(f"{m}.sigmoid", torch.sigmoid(z))
        h = keep(f"{m}.skip", h + a) if residual else a
    logits = keep("head.linear", h @ p["head.weight"] + p["head.bias"])
    torch.nn.functional.cross_entropy(logits, torch.tensor(data["y"])).backward()
    assert {r.name for r in flow.rows} == set(kept)
    for r in flow.rows:
        g = kept[r.name].grad.numpy()
        assert r.norm == pytest.approx(float(np.linalg.norm(g)), rel=1e-9, abs=0), r.name
        assert r.rms == pytest.approx(float(np.linalg.norm(g) / np.sqrt(g.size)), rel=1e-9, abs=0), r.name
        assert r.largest == pytest.approx(float(np.max(np.abs(g))), rel=1e-9, abs=0), r.name


def test_a_nan_is_flagged_with_its_count() -> None:
    """√ of a layer's negative outputs: NaN on, and a NaN gradient behind it, counted, the norms of the rest kept."""
    rng = np.random.default_rng(0)
    g = Graph("root")
    x = g.input("x", (BATCH, WIDTH))
    w1, b1 = g.parameter("fc.weight", (WIDTH, WIDTH), module="fc"), g.parameter("fc.bias", (WIDTH,), module="fc")
    w2, b2 = g.parameter("out.weight", (WIDTH, 2), module="out"), g.parameter("out.bias", (2,), module="out")
    root = g.add("sqrt", g.add("linear", x, w1, b1, name="fc", module="fc"), name="root", module="root")
    g.set_outputs(g.add("linear", root, w2, b2, name="out", module="out"))
    arrays = {"fc.weight": rng.standard_normal((WIDTH, WIDTH)), "fc.bias": np.zeros(WIDTH),
              "out.weight": rng.standard_normal((WIDTH, 2)), "out.bias": np.zeros(2)}
    data = {"x": rng.standard_normal((BATCH, WIDTH)), "y": rng.standard_normal((BATCH, 2))}
    s = Session(Model(g, arrays), get_backend("numpy", "float64"), data, "mse")
    flow = activation_flow(s)
    assert [r.name for r in flow.rows] == ["fc", "root", "out"]
    for r in flow.rows:
        grad = final_grad(s, r.name)
        assert r.verdict == "not finite" and r.nonfinite == int(np.count_nonzero(~np.isfinite(grad))) > 0
        assert np.isfinite(r.norm) and r.norm == pytest.approx(float(np.linalg.norm(grad[np.isfinite(grad)])))
    assert flow.summary().endswith("3 not finite (fc, root, out)")
    assert flow.reference_rms == 0.0  # nothing healthy to compare with: nothing called vanishing


def test_a_branch_the_loss_does_not_read_is_flagged_and_plumbing_is_left_out() -> None:
    """A head the loss never reads is an activation with no gradient; a mask made from the inputs is not one."""
    g = Graph("branches")
    x = g.input("x", (BATCH, WIDTH))
    w, b = g.parameter("body.weight", (WIDTH, WIDTH), module="body"), g.parameter("body.bias", (WIDTH,), module="body")
    aux_w = g.parameter("aux.weight", (WIDTH, 2), module="aux")
    zero = g.add("constant", name="zero", shape=())
    mask = g.add("compare", x, zero, name="mask", attrs={"op": "gt"}, module="gate")
    body = g.add("relu", g.add("linear", x, w, b, name="body.linear", module="body"), name="body", module="body")
    gated = g.add("where", mask, body, zero, name="gated", module="gate")
    g.add("matmul", body, aux_w, name="aux", module="aux")  # an auxiliary head, not an output
    head_w = g.parameter("head.weight", (WIDTH, CLASSES), module="head")
    g.set_outputs(g.add("matmul", gated, head_w, name="head", module="head"))
    rng = np.random.default_rng(2)
    arrays = {n.name: rng.standard_normal(n.shape) for n in g.parameters} | {"zero": np.array(0.0)}
    s = Session(Model(g, arrays), get_backend("numpy", "float64"), batch(), "cross_entropy")
    rows, depth = module_outputs(s.graph)
    assert depth == 2 and [out.node.name for out in rows] == ["body.linear", "body", "gated", "aux", "head"]
    flow = activation_flow(s)
    assert [(r.name, r.verdict) for r in flow.rows if r.verdict] == [("aux", "no gradient")]


@pytest.mark.torch
@pytest.mark.skipif(not zoo.has_torchvision(), reason="torchvision is not installed")
def test_resnet18_lists_its_blocks_with_autograds_numbers(tmp_path: Path) -> None:
    """torchvision's ResNet-18 (random weights): 15 rows, the stem's modules, the eight blocks, the head, rather than
    its 68 ops; each the gradient at that module's output as torch's hooks see it, and the skips keep it."""
    import copy

    import torch

    model, inputs, y = zoo.built("resnet18")
    path = tmp_path / "resnet18.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, tuple(torch.from_numpy(a) for a in inputs)), str(path))
    s = open_session(path, dtype="float64", data={"x": inputs[0], "y": y}, loss="cross_entropy")
    flow = activation_flow(s)
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert flow.depth == 2
    assert [r.label for r in flow.rows] == ["conv1", "bn1", "relu", "maxpool", *blocks, "avgpool", "flatten", "fc"]
    assert not flow.flagged
    block_rms = [r.rms for r in flow.rows if r.module in blocks]
    assert max(block_rms) < 10 * min(block_rms)

    reference = copy.deepcopy(model)
    kept: dict[str, Any] = {}
    for module in reference.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False  # an in-place ReLU would move a kept output's gradient to its own

    def keeper(name: str) -> Any:
        def hook(_module: Any, _args: Any, out: Any) -> None:
            out.retain_grad()
            kept[name] = out

        return hook

    for r in flow.rows:
        if r.module:
            reference.get_submodule(r.module).register_forward_hook(keeper(r.name))
    loss = torch.nn.functional.cross_entropy(reference(torch.from_numpy(inputs[0])), torch.from_numpy(y))
    loss.backward()
    assert flow.loss == pytest.approx(float(loss.detach()), rel=1e-9)
    assert len(kept) == len(flow.rows) - 1  # every row but the functional flatten
    for r in flow.rows:
        if r.name in kept:
            g = kept[r.name].grad.numpy()
            assert r.norm == pytest.approx(float(np.linalg.norm(g)), rel=1e-9, abs=0), r.label
            assert r.largest == pytest.approx(float(np.max(np.abs(g))), rel=1e-9, abs=0), r.label


def test_without_a_loss_it_says_how_to_get_one() -> None:
    with pytest.raises(PropscopeError, match="attach one"):
        activation_flow(open_session("xor", loss="none"))


def test_the_command_lists_activations_flags_and_writes_csv(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "act.csv"
    assert main(["grads", "classifier", "--activations", "--csv", str(out), "--strict"]) == 0
    text = capsys.readouterr().out
    assert "∂L/∂h at the module outputs of level 2" in text and "‖∂L/∂h‖" in text
    assert "3 activations" in text and "every gradient finite" in text
    lines = out.read_text().splitlines()
    assert lines[0] == "module,output,shape,step,norm,rms,max,nonfinite,flag"
    assert [line.split(",")[1] for line in lines[1:]] == ["hidden_input", "hidden", "logits"]


def test_strict_and_flagged_see_the_vanishing_activations(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from propscope.graph.readers.native import save

    path = save(deep_mlp(residual=False), tmp_path / "deep.propscope")
    assert main(["grads", str(path), "--activations", "--flagged", "--strict"]) == 1
    text = capsys.readouterr().out
    table = text.split("\n")[1:-2]
    assert table[0].lstrip().startswith("step") and all("vanishing" in line for line in table[1:])
    assert "layer0.linear" in table[1] and "head.linear" not in text.split("activations, loss")[0]


def test_the_terminal_debugger_lists_activations_and_keeps_the_cursor() -> None:
    s = open_session("classifier", dtype="float64")
    out = io.StringIO()
    commands = "step 2\nflow activations\nflow flagged activations\nflow sideways\nquit\n"
    DebuggerShell(s, stdin=io.StringIO(commands), stdout=out).cmdloop()
    text = out.getvalue()
    assert text.count("‖∂L/∂h‖") == 2 and "3 activations" in text and "‖∂L/∂w‖" not in text
    assert "usage: flow [activations | units] [flagged] (not sideways)" in text
    assert s.cursor == 2


def _gelu_net() -> Session:
    """fc1 → a tanh GELU exported op by op in its own module `act` (no parameters, no children) → fc2."""
    rng = np.random.default_rng(0)
    g = Graph("gelu_net")
    x = g.input("x", (BATCH, WIDTH))
    w1, w2 = g.parameter("fc1.weight", (WIDTH, WIDTH), module="fc1"), g.parameter("fc2.weight", (WIDTH, CLASSES),
                                                                                  module="fc2")
    consts = {"c.cube": 0.044715, "c.scale": 0.7978845608, "c.one": 1.0, "c.half": 0.5}
    c = {name: g.add("constant", name=name, shape=()) for name in consts}
    h = g.add("matmul", x, w1, name="fc1", module="fc1")
    cube = g.add("mul", g.add("pow", h, name="pow_1", module="act", attrs={"exponent": 3.0}), c["c.cube"],
                 name="mul", module="act")
    inner = g.add("mul", g.add("add", h, cube, name="add", module="act"), c["c.scale"], name="mul_1", module="act")
    gate = g.add("add", g.add("tanh", inner, name="tanh", module="act"), c["c.one"], name="add_1", module="act")
    a = g.add("mul", g.add("mul", h, c["c.half"], name="mul_2", module="act"), gate, name="gelu", module="act")
    g.set_outputs(g.add("matmul", a, w2, name="fc2", module="fc2"))
    arrays = {"fc1.weight": rng.standard_normal((WIDTH, WIDTH)), "fc2.weight": rng.standard_normal((WIDTH, CLASSES)),
              **{k: np.array(v) for k, v in consts.items()}}
    return session(Model(g, arrays, batch=batch(), loss="cross_entropy"))


def test_an_activation_function_exported_op_by_op_is_one_row() -> None:
    """A module without children that reads no parameter (an activation function, softmax, attention's core) is one
    function: its output is listed, never the terms of its formula, however deep the level that fits."""
    flow = activation_flow(_gelu_net())
    assert [(r.module, r.name) for r in flow.rows] == [("fc1", "fc1"), ("act", "gelu"), ("fc2", "fc2")]
    assert flow.depth == 1


def test_a_side_branch_with_a_small_local_derivative_is_not_vanishing() -> None:
    """A value whose ∂L/∂h is small because its consumer scales it down (a fresh attention's queries and keys, a
    gate), while the row it is computed from gets a healthy gradient, is not the error fading through depth: not
    flagged; a deep sigmoid chain, where every row before the small one is small too, still is."""
    rng = np.random.default_rng(0)
    g = Graph("side")
    x = g.input("x", (BATCH, WIDTH))
    p = {name: g.parameter(name, (WIDTH, WIDTH if name != "head.weight" else CLASSES), module=name.split(".")[0])
         for name in ("inp.weight", "side.weight", "head.weight")}
    tiny = g.add("constant", name="tiny", shape=())
    h = g.add("matmul", x, p["inp.weight"], name="inp", module="inp")
    side = g.add("matmul", h, p["side.weight"], name="side", module="side")
    mixed = g.add("add", h, g.add("mul", side, tiny, name="scaled", module="mix"), name="mix", module="mix")
    g.set_outputs(g.add("matmul", mixed, p["head.weight"], name="head", module="head"))
    arrays = {n.name: rng.standard_normal(n.shape) for n in g.parameters} | {"tiny": np.array(1e-6)}
    flow = activation_flow(session(Model(g, arrays, batch=batch(), loss="cross_entropy")))
    rows = {r.name: r for r in flow.rows}
    assert list(rows) == ["inp", "side", "mix", "head"]
    assert rows["side"].rms < 1e-4 * flow.reference_rms  # small enough to be called vanishing on its own
    assert not flow.flagged, flow.text()
    deep = activation_flow(session(deep_mlp(residual=False)))
    assert [r.verdict for r in deep.rows][:2] == ["vanishing", "vanishing"]


@pytest.mark.torch
@pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is not installed")
def test_a_healthy_small_gpt2_has_nothing_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """transformers' GPT2LMHeadModel, one layer, freshly initialised and exported: its GELU is one row (not pow_1,
    whose ∂L/∂h is 0.044715 · 3x² of the rest), its attention's queries and keys, small while the softmax is flat,
    are not called vanishing, and `--strict` passes."""
    import torch

    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=16, bos_token_id=0,
                        eos_token_id=0, use_cache=False)
    ids = torch.randint(0, 50, (1, 8))
    path = tmp_path / "gpt2.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(GPT2LMHeadModel(config).eval(), (ids,)), str(path))
    flow = activation_flow(open_session(path, loss="cross_entropy"))
    assert [r.name for r in flow.rows if r.module == "transformer.h.0.mlp.act"] == ["mul_3"]
    assert not any(r.name.startswith("pow") for r in flow.rows)
    assert not flow.flagged, flow.text(flagged_only=True)
    assert main(["grads", str(path), "--activations", "--flagged", "--strict", "--loss", "cross_entropy"]) == 0
    assert "every gradient finite" in capsys.readouterr().out
