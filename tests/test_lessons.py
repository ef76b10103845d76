"""Lessons: the built-in ones play start to end with the tutorial's numbers; bad files are refused by block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from propscope.debugger.lessons import (
    LessonError,
    LessonPlayer,
    builtin_lessons,
    load_lesson,
    loads,
    open_lesson_session,
    parse_check,
)

TORCH_LESSONS = {"part-10-pytorch"}


def play(name: str) -> tuple[LessonPlayer, dict[int, int]]:
    """Press Next until the lesson ends; where (at which cursor) each block was first shown."""
    lesson = load_lesson(name)
    player = LessonPlayer(lesson, open_lesson_session(lesson))
    shown = {0: player.session.cursor}
    failures: list[str] = []
    player.failed.connect(failures.append)
    player.block_changed.connect(lambda i: shown.setdefault(i, player.session.cursor))
    results = player.run_to_end()
    assert not failures, failures
    bad = [r.text() for r in results if not r.ok]
    assert not bad, bad
    return player, shown


def test_there_is_a_lesson_for_every_part_of_the_tutorial() -> None:
    parts = {name.split("-")[1][:2] for name in builtin_lessons()}
    assert parts == {f"{i:02d}" for i in range(1, 11)}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.torch, pytest.mark.slow])  # imports torch
                                  if n in TORCH_LESSONS else n for n in builtin_lessons()])
def test_each_lesson_steps_to_the_end_showing_every_block_at_its_anchor(name: str) -> None:
    player, shown = play(name)
    lesson = player.lesson
    assert set(shown) == set(range(len(lesson.blocks))), "every block is shown once on the way"
    for i, cursor in shown.items():
        assert cursor == player.positions[i], lesson.label(i)
        assert lesson.blocks[i].narration or lesson.blocks[i].checks or lesson.blocks[i].actions
    assert player.at_end
    assert not player.next(), "the lesson is over"


# -- the tutorial's numbers, one test per lesson (the numbers live here, not in the lesson files) -----------
def test_part_1_the_beach_perceptron_gives_z_17_and_goes() -> None:
    player, _ = play("part-01-perceptron")
    lesson = load_lesson("part-01-perceptron")
    p = LessonPlayer(lesson, open_lesson_session(lesson))
    p.next()  # the first block has no question: Next steps to forward step 1
    assert p.session.cursor == 1 and p.block.heading == "at forward step 1"
    assert float(p.session.value("z")) == 17.0
    assert "z = (1 · 5) + (1 · 10) + (0 · −20) + 2" in p.block.narration
    assert p.next() and p.answer_shown and "17" in p.block.answer  # the answer comes on the next press
    p.next()
    assert float(p.session.value("go")) == 1.0
    assert float(player.session.grad("w")[0]) == 0.0


def test_part_2_activations_and_their_derivatives() -> None:
    player, _ = play("part-02-activations")
    s = player.session
    z = np.arange(-3.0, 4.0)
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(s.value("sigmoid"), sig)
    np.testing.assert_allclose(s.value("tanh"), np.tanh(z))
    np.testing.assert_allclose(s.value("relu"), np.maximum(0, z))
    np.testing.assert_allclose(s.value("leaky_relu"), np.where(z > 0, z, 0.01 * z))
    local = {name: s.trace.record(s.node_phase_index(name, "backward")).local(0) for name in ("sigmoid", "tanh")}
    np.testing.assert_allclose(local["sigmoid"], sig * (1 - sig))
    np.testing.assert_allclose(local["tanh"], 1 - np.tanh(z) ** 2)
    assert local["sigmoid"].max() == 0.25  # "derivatives get tiny at the edges"


def test_part_2s_model_file_holds_five_activations_of_minus_3_to_3() -> None:
    """The shipped activations.propscope, read back: what it must hold for the lesson's words to be true."""
    lesson = load_lesson("part-02-activations")
    s = open_lesson_session(lesson)
    assert lesson.model == "activations.propscope" and s.model.loss == "sse"
    np.testing.assert_array_equal(s.batch["z"], np.arange(-3.0, 4.0))
    ops = {n.name: n.op.name for n in s.graph if not n.is_leaf and n.op.name != "add" and not n.op.is_loss}
    assert ops == {name: name for name in ("sigmoid", "tanh", "relu", "leaky_relu", "gelu")}
    assert s.graph["leaky_relu"].attrs["negative_slope"] == 0.01


def test_part_3_the_neuron_prints_output_0_9987() -> None:
    player, _ = play("part-03-neuron")
    np.random.seed(0)
    weights = np.random.randn(3)
    np.testing.assert_array_equal(player.session.value("weights"), weights)
    assert f"{float(player.session.value('output')):.4f}" == "0.9987"


def test_part_4_a_layer_is_one_matrix_product() -> None:
    player, _ = play("part-04-layer")
    s = player.session
    assert s.value("W").shape == (3, 4)
    np.testing.assert_allclose(s.value("z"), np.array([[1.0, 0.0, 5.0]]) @ s.value("W") + s.value("b"))


def test_part_5_cross_entropy_is_minus_log_of_the_right_class() -> None:
    lesson = load_lesson("part-05-loss")
    s = open_lesson_session(lesson)
    s.run_to_end()
    logits, y = s.value("logits"), s.batch["y"]
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert float(s.value("loss")) == pytest.approx(-logp[np.arange(len(y)), y].mean())
    play("part-05-loss")


def test_part_6_the_chain_rule_on_one_path_multiplies_its_links() -> None:
    player, _ = play("part-06-chain-rule")
    s = player.session
    a, x = float(s.value("output")), s.value("inputs")
    expected = 2 * (a - 1) * a * (1 - a) * x[2]  # dL/da · da/dz · dz/dw3
    assert float(s.grad("weights")[2]) == pytest.approx(expected, rel=1e-12)
    explanation = s.explain("weights", 2)
    assert explanation.total_paths == 1 and explanation.agrees()


TUTORIAL_XOR_LOSSES = [0.3267, 0.2186, 0.1529, 0.0425, 0.0144, 0.0077, 0.0051, 0.0037, 0.0029, 0.0024]
TUTORIAL_XOR_PREDICTIONS = [0.0441, 0.9556, 0.9593, 0.0490]


def test_part_7_xor_prints_the_tutorials_losses_and_predictions() -> None:
    player, _ = play("part-07-xor")
    assert player.trained_epochs == 10_000
    mse = np.asarray(player.history.column("mse"))  # the second run: epochs 2,000 to 9,999
    printed = [round(float(v), 4) for v in mse[0::1000]]
    assert printed == TUTORIAL_XOR_LOSSES[2:]
    shown = [round(float(v), 4) for v in player.session.value("final_output").ravel()]
    assert shown == TUTORIAL_XOR_PREDICTIONS


def test_part_8_every_optimizer_starts_from_the_same_weights_and_sgd_is_part_7() -> None:
    lesson = load_lesson("part-08-optimizers")
    session = open_lesson_session(lesson)
    runs = []
    player = LessonPlayer(lesson, session)  # block 1 trains on opening
    runs.append(np.asarray(player.history.column("mse")))
    while player.next():
        if player.block.trains and len(runs) <= player.index:
            runs.append(np.asarray(player.history.column("mse")))
    assert [b.anchor.kind for b in lesson.blocks] == ["train"] * 5 and len(runs) == 5
    assert len({round(float(r[0]), 12) for r in runs}) == 1  # @restart: every hiker starts from one point
    assert round(float(runs[0][1000]), 4) == TUTORIAL_XOR_LOSSES[1]  # SGD at lr 0.1 is Part 7
    sgd, *adaptive = (float(r[-1]) for r in runs)
    assert all(v < sgd / 10 for v in adaptive)


def test_part_9_the_edge_filter_gives_30_at_the_edge() -> None:
    player, _ = play("part-09a-cnn")
    edge = player.session.value("edge.map")[0, 0]
    np.testing.assert_array_equal(edge, np.tile([0.0, 30.0, 30.0, 0.0], (4, 1)))
    play("part-09b-lstm")
    attention, _ = play("part-09c-attention")
    weights = attention.session.value("attn.weights")
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0)
    assert np.all(np.triu(weights[0], k=1) == 0)  # causal


@pytest.mark.torch
def test_part_10_pytorch_xor_on_the_torch_backend_prints_the_tutorials_tensor() -> None:
    player, _ = play("part-10-pytorch")
    assert player.session.backend.name == "torch"
    shown = [round(float(v), 4) for v in player.session.value("act_2").ravel()]
    assert shown == [0.0040, 0.9974, 0.9887, 0.0093]


# -- keys --------------------------------------------------------------------------------------------------
def test_back_hides_the_answer_then_steps_back_and_moving_the_cursor_shows_its_block() -> None:
    lesson = load_lesson("part-01-perceptron")
    p = LessonPlayer(lesson, open_lesson_session(lesson))
    p.next()
    p.next()
    assert p.answer_shown
    assert p.back() and not p.answer_shown and p.session.cursor == 1
    assert p.back() and p.session.cursor == 0 and p.index == 0
    p.session.seek(len(p.session.steps))  # End in the app
    assert p.block.heading == "at the end"
    p.session.seek(2)
    assert p.block.heading == "at the forward step of `go`"


# -- the file format -----------------------------------------------------------------------------------
GOOD = """+++
format = "propscope-lesson 1"
title = "A test"
model = "xor"
+++
Intro.

## at the start
Hello.
@select W1[0, 1]

## at forward step 2
Step two.
Question: What?
Answer: That.

## at the backward step of `final_output`
@check grad final_input[0, 0] = 0.5 ± 1
"""


@pytest.mark.parametrize("name", list(builtin_lessons()))
def test_every_builtin_lesson_saves_back_byte_for_byte(name: str) -> None:
    lesson = load_lesson(name)
    assert lesson.path is not None
    assert lesson.dumps() == lesson.path.read_text(encoding="utf-8")


def test_an_edited_lesson_saves_and_reopens_identically(tmp_path: Path) -> None:
    lesson = loads(GOOD, "test")
    edited = lesson.with_block(1, "Step two, said better.\n@select hidden_output[0, 0]\nQuestion: Why?\nAnswer: So.\n")
    path = edited.save(tmp_path / "edited.md")
    again = load_lesson(path)
    assert again.blocks == edited.blocks and again.meta == edited.meta and again.intro == edited.intro
    assert again.dumps() == edited.dumps() == path.read_text(encoding="utf-8")
    assert again.blocks[1].narration == "Step two, said better." and again.blocks[1].answer == "So."
    assert again.blocks[0] == lesson.blocks[0] and again.blocks[2] == lesson.blocks[2]  # the others untouched


@pytest.mark.parametrize(("heading", "body", "says"), [
    ("at forwrd step 2", "", "unknown anchor"),
    ("at forward step 99", "", "5 forward steps"),
    ("at the backward step of `nope`", "", "unknown node 'nope'"),
    ("at forward step 2", "@select hidden_outptu[0, 0]", "unknown node 'hidden_outptu'"),
    ("at forward step 2", "@check W1[5, 0] = 1", "not an element of W1"),
    ("at forward step 2", "@frobnicate W1", "unknown action"),
    ("at forward step 2", "Question: What?", "no `Answer:`"),
    ("at forward step 2", "@optimizer adam", "after training"),
])
def test_a_bad_block_is_refused_in_one_line_naming_it(heading: str, body: str, says: str) -> None:
    text = GOOD.replace("## at forward step 2\nStep two.\nQuestion: What?\nAnswer: That.\n", f"## {heading}\n{body}\n")
    assert text != GOOD
    with pytest.raises(LessonError) as err:
        lesson = loads(text, "bad")
        LessonPlayer(lesson, open_lesson_session(lesson))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"bad: block 2 (line 12) `## {heading}`: "), message
    assert says in message


def test_blocks_out_of_order_are_refused() -> None:
    text = GOOD.replace("## at forward step 2", "## at backward step 3").replace(
        "## at the backward step of `final_output`", "## at forward step 1")
    lesson = loads(text, "order")
    with pytest.raises(LessonError, match=r"block 3 .*comes before the block above it"):
        open_lesson_session(lesson) and LessonPlayer(lesson, open_lesson_session(lesson))


def test_front_matter_and_names_are_checked() -> None:
    with pytest.raises(LessonError, match="format must be"):
        loads(GOOD.replace("propscope-lesson 1", "propscope-lesson 9"), "x")
    with pytest.raises(LessonError, match="unknown key 'modle'"):
        loads(GOOD.replace('model = "xor"', 'model = "xor"\nmodle = 1'), "x")
    with pytest.raises(LessonError, match="no lesson 'nope'"):
        load_lesson("nope")
    assert load_lesson("7").name == "part-07-xor"


def test_a_check_is_as_precise_as_the_number_written() -> None:
    check = parse_check("output = 0.9987")
    assert check.holds(0.99871) and not check.holds(0.99876)
    assert parse_check("mse at epoch 1,000 = 0.2186").epoch == 1000
    assert parse_check("grad W1[0, 1] = -0.01 ± 0.5").tolerance == 0.5
