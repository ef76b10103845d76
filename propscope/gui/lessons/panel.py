"""The Lesson dock's contents: the narration for the current step, questions answered on the next key press, editing.

`LessonController` drives one window's lessons through the hooks of its step keys (F10, →, PageDown; Back:
Shift+F10, ←, PageUp: a presenter remote's two buttons) while one is open; the headless part,
`debugger.lessons.LessonPlayer`, moves the session, and its events come here through Qt signals, since a
training run may move the cursor on a worker thread. Made when the dock is first shown or used (`__init__.py`).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ...debugger import Session
from ...debugger.lessons import Lesson, LessonError, LessonPlayer, load_lesson, open_lesson_session
from ...graph.errors import PropscopeError
from ..docks import DockScroll, ScrollBody, tabify
from ..jobs import Job
from ..theme import ThemeManager

NARRATION_PX = 15  # before the theme's scale: projector mode makes it big for the back row


class PlayerSignals(QObject):
    """The player's psygnal events as Qt signals (queued to the GUI thread when they fire elsewhere)."""

    blockChanged = Signal(int)
    answerChanged = Signal(bool)
    selectRequested = Signal(str, object)
    explainRequested = Signal(str, object)
    failed = Signal(str)

    def watch(self, player: LessonPlayer) -> None:
        player.block_changed.connect(self.blockChanged.emit)
        player.answer_changed.connect(self.answerChanged.emit)
        player.select_requested.connect(lambda n, i: self.selectRequested.emit(n, i))
        player.explain_requested.connect(lambda n, i: self.explainRequested.emit(n, i))
        player.failed.connect(self.failed.emit)


class LessonPanel(QWidget):
    """Shows one block: where it is, its narration, its question (and answer once revealed), its checks."""

    nextRequested = Signal()
    backRequested = Signal()
    saveRequested = Signal()

    def __init__(self, themes: ThemeManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lessonPanel")
        self.themes = themes
        self.player: LessonPlayer | None = None
        self.title = QLabel("No lesson open: File ▸ Lessons")
        self.title.setWordWrap(True)
        self.where = QLabel()
        self.where.setObjectName("lessonWhere")
        self.where.setWordWrap(True)  # a long anchor must not widen the dock over the canvas
        self.narration = QTextBrowser()
        self.narration.setObjectName("lessonNarration")
        self.narration.setOpenExternalLinks(True)
        self.narration.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # the step keys stay with the window
        self.question = QLabel()
        self.question.setWordWrap(True)
        self.answer = QLabel()
        self.answer.setWordWrap(True)
        self.checks = QLabel()
        self.checks.setWordWrap(True)
        self.checks.setObjectName("lessonChecks")
        self.back_button = QPushButton("◀ Back")
        self.next_button = QPushButton("Next ▶")
        self.edit_button = QPushButton("Edit block")
        self.edit_button.setCheckable(True)
        self.save_button = QPushButton("Save lesson…")
        for b in (self.back_button, self.next_button, self.edit_button, self.save_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.back_button.clicked.connect(self.backRequested.emit)
        self.next_button.clicked.connect(self.nextRequested.emit)
        self.save_button.clicked.connect(self.saveRequested.emit)
        self.edit_button.toggled.connect(self._edit)
        # editing: the block's heading (its anchor) and its text, exactly as in the file
        self.heading_edit = QLineEdit()
        self.body_edit = QPlainTextEdit()
        self.body_edit.setObjectName("lessonBodyEdit")
        self.apply_button = QPushButton("Apply")
        self.apply_button.clicked.connect(self.apply_edit)
        self.edit_error = QLabel()
        self.edit_error.setWordWrap(True)
        editor = QWidget()
        ed = QVBoxLayout(editor)
        ed.setContentsMargins(0, 0, 0, 0)
        ed.addWidget(QLabel("## heading (the anchor):"))
        ed.addWidget(self.heading_edit)
        ed.addWidget(self.body_edit, 1)
        ed.addWidget(self.edit_error)
        ed.addWidget(self.apply_button)
        viewer = QWidget()
        vl = QVBoxLayout(viewer)
        vl.setContentsMargins(0, 0, 0, 0)
        vl.addWidget(self.narration, 1)
        vl.addWidget(self.question)
        vl.addWidget(self.answer)
        vl.addWidget(self.checks)
        self.stack = QStackedWidget()
        self.stack.addWidget(viewer)
        self.stack.addWidget(editor)
        buttons = QHBoxLayout()
        for b in (self.back_button, self.next_button, self.edit_button, self.save_button):
            buttons.addWidget(b)
        # the title and the narration scroll where the dock is shorter than they are (beside the canvas in projector
        # type at 1024×768 the rows asked the window for 841 lines); Back and Next stay in sight below them
        body = ScrollBody()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.where)
        lay.addWidget(self.stack, 1)
        self._edit(False)
        self.scroll = DockScroll(body)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.addWidget(self.scroll, 1)
        outer.addLayout(buttons)
        themes.changed.connect(self.refresh)
        self.refresh()

    # -- showing ----------------------------------------------------------------------------------
    def set_player(self, player: LessonPlayer | None) -> None:
        self.player = player
        self.edit_button.setChecked(False)
        self.refresh()

    def refresh(self) -> None:
        theme = self.themes.theme
        size = theme.px(NARRATION_PX)
        self.narration.document().setDefaultStyleSheet(f"body {{ font-size: {size}px; }}")
        self.title.setFont(theme.font(NARRATION_PX + 2, bold=True))
        for label in (self.question, self.answer):
            label.setFont(theme.font(NARRATION_PX, bold=label is self.question))
        self.checks.setFont(theme.font(NARRATION_PX - 3))
        p = self.player
        enabled = p is not None
        for b in (self.back_button, self.next_button, self.edit_button, self.save_button):
            b.setEnabled(enabled)
        if p is None:
            self.title.setText("No lesson open: File ▸ Lessons")
            self.where.setText("")
            self.narration.setMarkdown("")
            for label in (self.question, self.answer, self.checks):
                label.hide()
            return
        block = p.block
        self.title.setText(p.lesson.title)
        anchor = "" if theme.projector else f" · {block.heading}"  # on the wall: the narration gets the room
        self.where.setText(f"Block {p.index + 1} of {len(p.lesson.blocks)}{anchor} · {p.session.position_text()}")
        self.narration.setMinimumHeight(theme.px(NARRATION_PX) * 5)  # four lines at least, whatever the docks do
        intro = p.lesson.intro.strip() if p.index == 0 else ""
        self.narration.setFont(theme.font(NARRATION_PX))
        self.narration.document().setDefaultFont(theme.font(NARRATION_PX))
        self.narration.setMarkdown("\n\n".join(t for t in (intro, block.narration) if t))
        self.question.setVisible(bool(block.question))
        self.question.setText(f"Question: {block.question}")
        self.answer.setVisible(bool(block.question))
        self.answer.setText(f"Answer: {block.answer}" if p.answer_shown else "(Next reveals the answer)")
        results = p.results.get(p.index, [])
        self.checks.setVisible(bool(results))
        color = theme.colors["muted"]
        self.checks.setText(f"<span style='color:{color}'>" + " &nbsp; ".join(escape(r.text()) for r in results)
                            + "</span>")
        self.next_button.setEnabled(not p.at_end)
        if self.edit_button.isChecked():
            self._fill_editor()

    # -- editing ------------------------------------------------------------------------------------
    def _edit(self, on: bool) -> None:
        self.stack.setCurrentIndex(1 if on else 0)
        for i in range(self.stack.count()):  # the page not shown asks for no room (a stack asks for its largest)
            policy = QSizePolicy.Policy.Preferred if i == self.stack.currentIndex() else QSizePolicy.Policy.Ignored
            self.stack.widget(i).setSizePolicy(policy, policy)
        if on:
            self._fill_editor()

    def _fill_editor(self) -> None:
        if self.player is None:
            return
        block = self.player.block
        self.heading_edit.setText(block.heading)
        self.body_edit.setPlainText(block.body)
        self.edit_error.setText("")

    def apply_edit(self) -> bool:
        """Put the edited text into the lesson; a block that does not parse or fit says why and stays open."""
        p = self.player
        if p is None:
            return False
        try:
            edited = p.lesson.with_block(p.index, self.body_edit.toPlainText(), self.heading_edit.text())
            p.replace_lesson(edited)
        except LessonError as exc:
            self.edit_error.setText(str(exc))
            return False
        self.edit_button.setChecked(False)
        self.refresh()
        return True


class LessonController(QObject):
    """One window's lessons: opening one, its key hooks, the panel, and leaving it when the model changes."""

    def __init__(self, window: Any, dock: QDockWidget) -> None:
        """`dock`: the window's Lesson dock (hidden until a lesson opens), which gets the panel."""
        super().__init__(window)
        self.window = window
        self.player: LessonPlayer | None = None
        self.signals: PlayerSignals | None = None
        self.training: Job | None = None  # a training block's run
        self.panel = LessonPanel(window.themes)
        self.dock = dock
        dock.setWidget(self.panel)
        self.panel.nextRequested.connect(self.next)
        self.panel.backRequested.connect(self.back)
        self.panel.saveRequested.connect(self._save_dialog)
        window.bridge.sessionChanged.connect(self._session_changed)
        window.bridge.cursorMoved.connect(lambda _c: self._keys())
        window.projector_action.toggled.connect(lambda _on: self._keep_visible())

    @property
    def lesson(self) -> Lesson | None:
        return None if self.player is None else self.player.lesson

    # -- opening ----------------------------------------------------------------------------------
    def open(self, name_or_file: str | Path) -> Job | None:
        """Open a lesson (its model in a job: one of them starts PyTorch); a bad lesson file is shown, not opened."""
        try:
            lesson = load_lesson(name_or_file)
        except PropscopeError as exc:
            self.window.show_error("Cannot open lesson", str(exc))
            return None
        job = Job(f"Opening lesson {lesson.title}…", lambda: open_lesson_session(lesson), self.window)
        return self.window._start(job, lambda session: self.start(lesson, session), "Cannot open lesson")

    def start(self, lesson: Lesson, session: Session) -> bool:
        """Show `session` in the window and play `lesson` on it (False, with a dialog, if it does not fit)."""
        self.stop()
        self.window.install(session)
        try:
            player = LessonPlayer(lesson, session)
        except PropscopeError as exc:
            self.window.show_error("Cannot open lesson", str(exc))
            return False
        self.player = player
        self.signals = PlayerSignals(self)
        self.signals.blockChanged.connect(lambda _i: self._shown())
        self.signals.answerChanged.connect(lambda _on: self.panel.refresh())
        self.signals.selectRequested.connect(lambda n, i: self.window.selection.select(n, tuple(i) or None))
        self.signals.explainRequested.connect(lambda n, i: self.window.explain(n, tuple(i)))
        self.signals.failed.connect(lambda why: self.window.message(f"Lesson: {why}"))
        self.signals.watch(player)
        debug = self.window.debug
        debug.step_hook, debug.back_hook = self.next, self.back
        self.panel.set_player(player)
        self._replay_entry()
        if not self.window.themes.projector and self.dock.isHidden():
            # tabbed with the neuron view under the inspector: the narration gets that whole place
            tabify(self.window, self.window.neurons_dock, self.dock)
        self.dock.show()
        self.dock.raise_()
        self._keep_visible()
        self._keys()
        self.window.message(f"Lesson: {lesson.title} · Next: →, PageDown or F10; Back: ←, PageUp")
        return True

    def _replay_entry(self) -> None:
        """The first block's actions ran before the window listened: apply what they ask of the views."""
        p = self.player
        assert p is not None
        for action in p.block.actions:
            if action.verb == "select":
                self.window.selection.select(action.element.node, action.element.index or None)

    def stop(self) -> None:
        if self.player is not None:
            self.player.close()
        self.player = None
        self.window.debug.step_hook = self.window.debug.back_hook = None
        self.panel.set_player(None)
        self.window.debug.update_enabled()

    def _session_changed(self, session: Session) -> None:
        if self.player is not None and session is not self.player.session:
            self.stop()  # another model opened: the lesson is over
        self._keep_visible()

    # -- keys ---------------------------------------------------------------------------------------
    def next(self) -> bool:
        p = self.player
        if p is None:
            return False
        if self.training is not None or p.training:
            return True  # a press while the lesson trains waits for it
        if p.next_trains():
            self._train(p)
            return True
        try:
            p.next()
        except PropscopeError as exc:
            self.window.show_error("Lesson", str(exc))
        self._shown()
        return True  # the press is the lesson's, even at its end (it must not step past a question)

    def _train(self, p: LessonPlayer) -> Job:
        """A training block trains in a job (progress, and Cancel stops after the current epoch)."""
        epochs = p.lesson.blocks[p.index + 1].anchor.number
        job = Job(f"Training {epochs:,} epochs for the lesson…", p.next, self.window)
        self.training = job

        def finish() -> None:
            self.training = None
            self._shown()

        job.cancelled.connect(p.stop_training)
        job.cancelled.connect(finish)
        job.failed.connect(lambda _e: finish())
        return self.window._start(job, lambda _r: finish(), "Lesson")

    def back(self) -> bool:
        if self.player is None:
            return False
        self.player.back()
        self._shown()
        return True

    def _shown(self) -> None:
        self.panel.refresh()
        self._keys()

    def _keys(self) -> None:
        """Step stays on while the lesson has more (a training block after the end of the pass)."""
        p = self.player
        if p is None:
            return
        debug = self.window.debug
        debug.step.setEnabled(not p.at_end)
        debug.back.setEnabled(p.session.cursor > 0 or p.answer_shown or p.index > p.stage_start())
        self.panel.refresh()

    def _keep_visible(self) -> None:
        """Projector mode hides every dock but the chain rule's; a lesson's narration stays on the wall,
        beside the canvas, at a third of the window's width."""
        if self.player is None:
            return
        if self.dock.isHidden():
            self.dock.show()
            self.dock.raise_()
        if self.window.themes.projector:
            if self.dock.isFloating():
                self.dock.setFloating(False)
            # once the layout has settled (projector mode rearranges the docks on this same event)
            QTimer.singleShot(0, lambda: self.window.resizeDocks([self.dock], [self.window.width() // 3],
                                                                 Qt.Orientation.Horizontal))

    # -- saving ---------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path | None:
        if self.player is None:
            return None
        try:
            written = self.player.lesson.save(path)
        except OSError as exc:
            self.window.show_error("Cannot save lesson", f"{path}: {exc.strerror or exc}")
            return None
        self.window.message(f"Saved lesson {written}")
        return written

    def _save_dialog(self) -> None:
        lesson = self.lesson
        if lesson is None:
            return
        name = f"{lesson.name or 'lesson'}.md"
        path, _ = QFileDialog.getSaveFileName(self.window, "Save lesson", name, "Lessons (*.md)")
        if path:
            self.save(path)
