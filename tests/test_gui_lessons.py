"""The lesson panel in the real window: the step keys and a presenter remote drive the lesson; edit and save."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMenu

from propscope.debugger.lessons import load_lesson, open_lesson_session
from propscope.gui.main_window import MainWindow

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = [pytest.mark.qt_log_ignore(OFFSCREEN_NOISE), pytest.mark.qt_log_level_fail("WARNING")]


def lesson_window(qtbot, name: str = "part-01-perceptron") -> MainWindow:
    lesson = load_lesson(name)
    session = open_lesson_session(lesson)
    w = MainWindow(session, settings=None)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    assert w.lessons.start(lesson, session)
    return w


def press(qtbot, w: MainWindow, key: Qt.Key) -> None:
    qtbot.keyClick(w, key)


def test_the_presenter_remote_steps_the_lesson_and_reveals_the_answer(qtbot) -> None:
    w = lesson_window(qtbot)
    panel, s = w.lessons.panel, w.bridge.session
    assert not w.lessons.dock.isHidden()
    assert panel.title.text().startswith("Part 1") and "x₁ = 1" in panel.narration.toPlainText()
    assert w.selection.node == "x" and w.selection.index == (0,)  # the first block's @select
    press(qtbot, w, Qt.Key.Key_PageDown)
    assert s.cursor == 1 and "z = (1 · 5)" in panel.narration.toPlainText()
    assert panel.question.text() == "Question: What is z?" and "Next reveals" in panel.answer.text()
    assert "✓ z = 17" in panel.checks.text()
    press(qtbot, w, Qt.Key.Key_PageDown)  # the answer, not a step
    assert s.cursor == 1 and "17" in panel.answer.text() and "Answer" in panel.answer.text()
    press(qtbot, w, Qt.Key.Key_PageUp)  # hides it again
    assert s.cursor == 1 and "Next reveals" in panel.answer.text()
    for _ in range(2):
        press(qtbot, w, Qt.Key.Key_Right)
    assert s.cursor == 2 and "simple step" in panel.narration.toPlainText()  # the answer first, then the step
    assert w.lessons.player.block.heading == "at the forward step of `go`"
    w.close()


def test_the_step_keys_go_on_into_training_after_the_end_of_the_pass(qtbot) -> None:
    w = lesson_window(qtbot, "part-07-xor")
    p = w.lessons.player
    s = w.bridge.session
    while p.index < 7:  # up to "at the end"
        press(qtbot, w, Qt.Key.Key_F10)
    assert s.at_end and w.debug.step.isEnabled(), "Step stays on: the lesson has a training block next"
    press(qtbot, w, Qt.Key.Key_F10)  # trains off the GUI thread
    qtbot.waitUntil(lambda: w.lessons.training is None, timeout=30_000)
    assert p.block.trains and p.trained_epochs == 2000 and s.cursor == 0
    assert "✓ mse at epoch 1000 = 0.2186" in w.lessons.panel.checks.text()
    # the next training block, cancelled: it stops after the current epoch and shows what was reached
    press(qtbot, w, Qt.Key.Key_F10)
    job = w.lessons.training
    assert job is not None
    qtbot.waitUntil(lambda: p.training, timeout=10_000)
    press(qtbot, w, Qt.Key.Key_F10)  # a press while training waits
    job.cancel()
    qtbot.waitUntil(lambda: not p.training and p.index == 9, timeout=30_000)
    assert 2000 <= p.trained_epochs < 10_000 and p.history.stopped  # cancel may land before the first epoch ends
    w.close()


def test_an_explain_action_opens_the_explain_view(qtbot) -> None:
    w = lesson_window(qtbot, "part-06-chain-rule")
    while w.lessons.player.block.heading != "at the backward step of `z`":
        press(qtbot, w, Qt.Key.Key_PageDown)
    qtbot.waitUntil(lambda: getattr(w, "explain_dialog", None) is not None, timeout=20_000)
    assert w.explain_dialog.isVisible()
    w.close()


def test_a_teacher_edits_a_block_and_saves_the_lesson(qtbot, tmp_path) -> None:
    w = lesson_window(qtbot)
    panel = w.lessons.panel
    press(qtbot, w, Qt.Key.Key_PageDown)
    panel.edit_button.setChecked(True)
    assert panel.heading_edit.text() == "at forward step 1"
    panel.body_edit.setPlainText("The sum, said my way.\n@select z\n@check z = 17\n")
    assert panel.apply_edit()
    assert panel.narration.toPlainText() == "The sum, said my way." and not panel.question.isVisible()
    path = w.lessons.save(tmp_path / "mine.md")
    again = load_lesson(path)
    assert again.blocks == w.lessons.lesson.blocks and again.dumps() == path.read_text(encoding="utf-8")
    # an edit that does not fit the model is refused in one line naming the block, and nothing changes
    panel.edit_button.setChecked(True)
    panel.heading_edit.setText("at the backward step of `nope`")
    assert not panel.apply_edit()
    assert "block 2" in panel.edit_error.text() and "unknown node 'nope'" in panel.edit_error.text()
    assert w.lessons.lesson.blocks[1].heading == "at forward step 1"
    w.close()


def test_projector_mode_keeps_the_narration_big_on_the_wall(qtbot) -> None:
    w = lesson_window(qtbot)
    normal = w.lessons.panel.narration.font().pixelSize()
    w.set_projector(True, full_screen=False)
    qtbot.wait(50)
    assert not w.lessons.dock.isHidden()
    assert w.lessons.panel.narration.font().pixelSize() > normal
    w.set_projector(False)
    w.close()


def test_opening_another_model_ends_the_lesson_and_file_lessons_lists_them(qtbot) -> None:
    w = lesson_window(qtbot)
    menu = w.findChild(QMenu, "lessonsMenu")
    menu.aboutToShow.emit()  # the lessons are listed when the menu first opens
    titles = [a.text() for a in menu.actions() if a.text()]
    assert len([t for t in titles if t.startswith("Part ")]) == 12 and titles[-1] == "Open lesson file…"
    job = w.open_example("xor")
    qtbot.waitUntil(lambda: not job.running, timeout=20_000)
    assert w.lessons.player is None and w.debug.step_hook is None
    press(qtbot, w, Qt.Key.Key_PageDown)
    assert w.bridge.session.cursor == 1  # plain stepping again
    job = w.lessons.open("3")  # as File ▸ Lessons does: the model opens in a job
    qtbot.waitUntil(lambda: w.lessons.player is not None, timeout=20_000)
    assert w.bridge.session.name == "neuron" and w.lessons.lesson.name == "part-03-neuron"
    assert w.lessons.open("no-such-lesson") is None and "no lesson 'no-such-lesson'" in w.last_error
    w.close()
