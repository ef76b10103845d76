"""Lessons: narration for a class, anchored to the steps of a pass, as a plain versioned text file.

A lesson is Markdown with TOML front matter between `+++` lines (the format is in the README):

    +++
    format = "propscope-lesson 1"
    title = "Part 1: the perceptron"
    model = "perceptron"          # a built-in example, or a model file beside the lesson
    +++
    Text before the first block introduces the lesson.

    ## at forward step 1
    Narration for the class (Markdown).
    @select z
    @check z = 17
    Question: Does the step function say "go"?
    Answer: Yes: 17 > 0.

Every `## ` heading opens a block anchored by its heading (`at the start`, `at forward step 3`, `at
step 7`, `at the backward step of `final_output``, `at the end`, `after training 2,000 epochs`). Lines
starting with `@` are actions (`select`, `explain`, `backend`, `breakpoint`, `optimizer`, `restart`)
and checks (`@check z = 17`: the number a block claims, verified when the block is shown).

A block keeps its text exactly as written, so a lesson saves back byte for byte and a teacher's edit
to one block changes only that block. `LessonPlayer` drives a `Session` through a lesson one key
press at a time; it knows no Qt.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from ..graph.errors import PropscopeError
from .session import Session, open_session
from .steps import BACKWARD, FORWARD, BackwardStep

FORMAT = "propscope-lesson 1"
SUFFIX = ".md"
FENCE = "+++"
FRONT_KEYS = {"format", "title", "part", "summary", "model", "data", "backend", "dtype", "seed", "loss", "device"}
ACTIONS = {"select", "explain", "backend", "breakpoint", "optimizer", "restart", "check"}
TRAINING_ACTIONS = {"optimizer", "restart"}  # applied before a training block trains; the others after


class LessonError(PropscopeError):
    """A lesson that cannot be read or does not fit its model: one line naming the file and the block."""


# -- the parts of a lesson ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Anchor:
    """Where a block is shown: a cursor position in the pass, or right after a training run."""

    kind: str  # "start", "end", "step" (overall), "forward", "backward" (numbered in that pass), "node", "train"
    number: int = 0  # the step number, or the epochs to train
    phase: str = FORWARD  # for "node"
    node: str = ""  # for "node"

    def position(self, session: Session) -> int:
        """The session cursor at which the block is shown (training blocks: 0, the fresh pass)."""
        total, n_forward = len(session.steps), session.n_forward
        if self.kind in ("start", "train"):
            return 0
        if self.kind == "end":
            return total
        if self.kind == "node":
            index = session.node_phase_index(self.node, self.phase)
            if index is None:
                raise LessonError(f"{self.node} has no {self.phase} step")
            return index + 1
        limit = {"step": total, FORWARD: n_forward, BACKWARD: total - n_forward}[self.kind]
        if not 1 <= self.number <= limit:
            what = "steps" if self.kind == "step" else f"{self.kind} steps"
            raise LessonError(f"the pass has {limit} {what}, so there is no step {self.number}")
        return self.number + (n_forward if self.kind == BACKWARD else 0)


_ANCHORS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Anchor]]] = [
    (re.compile(r"at (?:the )?start", re.I), lambda m: Anchor("start")),
    (re.compile(r"at (?:the )?end", re.I), lambda m: Anchor("end")),
    (re.compile(r"at (?:(forward|backward) )?step (\d+)", re.I),
     lambda m: Anchor((m[1] or "step").lower(), int(m[2]))),
    (re.compile(r"at the (forward|backward) step of `?([^`\s]+)`?", re.I),
     lambda m: Anchor("node", phase=m[1].lower(), node=m[2])),
    (re.compile(r"after training ([\d,_]+) epochs?", re.I),
     lambda m: Anchor("train", int(m[1].replace(",", "").replace("_", "")))),
]
ANCHOR_FORMS = ("at the start", "at forward step N", "at backward step N", "at step N",
                "at the forward step of `NODE`", "at the backward step of `NODE`", "at the end",
                "after training N epochs")


def parse_anchor(text: str) -> Anchor:
    for pattern, make in _ANCHORS:
        m = pattern.fullmatch(text.strip())
        if m:
            return make(m)
    raise ValueError(f"unknown anchor; write one of: {', '.join(ANCHOR_FORMS)}")


@dataclass(frozen=True)
class Element:
    """A node and (optionally) one element of it, written `W1[0, 1]`."""

    node: str
    index: tuple[int, ...] = ()

    def __str__(self) -> str:
        return self.node + (f"[{', '.join(map(str, self.index))}]" if self.index else "")


_ELEMENT = re.compile(r"([^\s\[\]]+)\s*(?:\[([\d,\s]*)\])?")


def parse_element(text: str) -> Element:
    m = _ELEMENT.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text.strip()!r} is not NODE or NODE[i, j]")
    index = tuple(int(i) for i in (m[2] or "").replace(",", " ").split())
    return Element(m[1], index)


@dataclass(frozen=True)
class Check:
    """A number a block states, checked against the session when the block is shown.

    `what` is "value", "grad" (∂L/∂node), "local" (the local derivative ∂node/∂input at its backward
    step) or a training column ("loss", "mse", ...) read `at epoch N` of the last training run.
    The tolerance is half a unit of the last decimal written (0.9987 → ±0.00005) unless `± tol` is given.
    """

    what: str
    element: Element | None
    epoch: int | None
    expected: float
    tolerance: float
    text: str

    def actual(self, session: Session, history: Any, first_epoch: int = 0) -> float:
        """The number in the session now; training epochs count from the lesson's start (or last @restart),
        and the last run began at `first_epoch`."""
        if self.element is None:
            if history is None:
                raise LessonError(f"`{self.text}` reads the last training run, and none has run yet")
            column = history.column(self.what)
            at = (self.epoch or 0) - first_epoch
            if not 0 <= at < len(column):
                raise LessonError(f"`{self.text}`: the last training run covered epochs {first_epoch} to "
                                  f"{first_epoch + len(column) - 1}")
            return float(column[at])
        name = self.element.node
        if self.what == "local":
            record = session.current
            if not isinstance(record, BackwardStep) or record.node.name != name:
                raise LessonError(f"`{self.text}` needs the block at the backward step of {name}")
            part = record.local(0)
            array = None if part is None else session.backend.to_numpy(part)
        else:
            array = session.grad(name) if self.what == "grad" else session.value(name)
        if array is None:
            raise LessonError(f"`{self.text}`: {name} has no {self.what} at this step")
        return float(np.asarray(array)[self.element.index] if self.element.index else np.asarray(array).ravel()[0])

    def holds(self, actual: float) -> bool:
        return math.isfinite(actual) and abs(actual - self.expected) <= self.tolerance * (1 + 1e-9) + 1e-15


_CHECK = re.compile(r"(?:(grad|local)\s+)?(.+?)(?:\s+at epoch ([\d,_]+))?\s*=\s*([-+]?[\d.,_]+(?:e[-+]?\d+)?)"
                    r"(?:\s*±\s*([\d.eE+-]+))?", re.I)


def parse_check(text: str) -> Check:
    m = _CHECK.fullmatch(text.strip())
    if not m:
        raise ValueError("write `@check NODE[i] = 0.25`, `@check grad W1[0, 1] = -0.01` or "
                         "`@check mse at epoch 1000 = 0.2186`")
    kind, subject, epoch, number, tol = m[1], m[2].strip(), m[3], m[4].replace(",", "").replace("_", ""), m[5]
    expected = float(number)
    decimals = len(number.split(".")[1]) if "." in number and "e" not in number.lower() else 0
    tolerance = float(tol) if tol else 0.5 * 10.0 ** -decimals
    if epoch is not None:
        if kind:
            raise ValueError("a training column is checked as `@check mse at epoch 1000 = 0.2186`")
        return Check(subject.lower(), None, int(epoch.replace(",", "").replace("_", "")), expected, tolerance,
                     text.strip())
    return Check((kind or "value").lower(), parse_element(subject), None, expected, tolerance, text.strip())


@dataclass(frozen=True)
class Action:
    verb: str
    args: tuple[str, ...]
    text: str  # the line as written, without its `@`

    @property
    def element(self) -> Element:
        return parse_element(" ".join(self.args))

    def options(self) -> dict[str, float]:
        """`name=value` settings (the optimizer's lr, momentum, ...)."""
        out = {}
        for arg in self.args[1:]:
            key, sep, value = arg.partition("=")
            if not sep:
                raise ValueError(f"{arg!r} is not name=value")
            out[key.replace("-", "_")] = float(value)
        return out


@dataclass(frozen=True)
class Block:
    """One anchored piece of the lesson. `heading` and `body` are kept exactly as written."""

    heading: str  # the text after `## `
    body: str  # every line up to the next heading, newlines included
    anchor: Anchor
    narration: str
    actions: tuple[Action, ...]
    checks: tuple[Check, ...]
    question: str = ""
    answer: str = ""
    line: int = field(default=0, compare=False)  # where the heading is in the file (1-based), for errors

    @property
    def trains(self) -> bool:
        return self.anchor.kind == "train"


def parse_block(heading: str, body: str, line: int = 0) -> Block:
    """A block from its heading and body; ValueError says what is wrong (the caller names the block)."""
    anchor = parse_anchor(heading)
    narration: list[str] = []
    actions: list[Action] = []
    checks: list[Check] = []
    question: list[str] = []
    answer: list[str] = []
    target = narration
    for raw in body.splitlines():
        text = raw.strip()
        if text.startswith("@"):
            words = text[1:].split()
            if not words or words[0].lower() not in ACTIONS:
                raise ValueError(f"unknown action `{text}`; actions: {', '.join(sorted(ACTIONS))}")
            verb = words[0].lower()
            if verb == "check":
                checks.append(parse_check(text[1:].strip()[len("check"):]))
            else:
                actions.append(_action(verb, tuple(words[1:]), text[1:]))
            continue
        bare = text.replace("**", "").replace("__", "")
        if bare.lower().startswith("question:"):
            target = question
            text = bare[len("question:"):].strip()
        elif bare.lower().startswith("answer:"):
            if target is not question:
                raise ValueError("an answer needs a question above it")
            target = answer
            text = bare[len("answer:"):].strip()
        target.append(text if target is not narration else raw.rstrip())
    if question and not answer:
        raise ValueError("the question has no `Answer:` line; the class would wait forever")
    if anchor.kind != "train" and any(a.verb in TRAINING_ACTIONS for a in actions):
        raise ValueError("@optimizer and @restart belong in an `after training N epochs` block")
    return Block(heading, body, anchor, "\n".join(narration).strip(), tuple(actions), tuple(checks),
                 " ".join(q for q in question if q).strip(), "\n".join(answer).strip(), line)


def _action(verb: str, args: tuple[str, ...], text: str) -> Action:
    action = Action(verb, args, text)
    if verb in ("select", "explain", "breakpoint"):
        if not args:
            raise ValueError(f"@{verb} needs a node, e.g. `@{verb} W1[0, 1]`")
        action.element  # noqa: B018 - parses, raising ValueError on a bad element
    elif verb == "backend":
        if len(args) != 1:
            raise ValueError("write `@backend torch` or `@backend numpy`")
    elif verb == "optimizer":
        if not args:
            raise ValueError("write `@optimizer adam lr=0.1`")
        action.options()
    elif verb == "restart" and args:
        raise ValueError("@restart takes nothing: it puts back the model's initial weights")
    return action


@dataclass
class Lesson:
    """A parsed lesson. `front` and `intro` are the raw text of the front matter and the introduction."""

    meta: dict[str, Any]
    blocks: list[Block]
    front: str
    intro: str
    path: Path | None = None
    name: str = ""

    @property
    def title(self) -> str:
        return str(self.meta.get("title", self.name))

    @property
    def model(self) -> str:
        return str(self.meta["model"])

    def label(self, i: int) -> str:
        """How an error names block `i`: its number, its line and its heading."""
        b = self.blocks[i]
        where = f" (line {b.line})" if b.line else ""
        return f"block {i + 1}{where} `## {b.heading}`"

    def model_target(self) -> str:
        """The example name, or the model file's path (relative to the lesson file)."""
        model = self.model
        from ..graph.examples import EXAMPLES

        if model in EXAMPLES or self.path is None:
            return model
        return str((self.path.parent / model).resolve())

    def with_block(self, i: int, body: str, heading: str | None = None) -> Lesson:
        """This lesson with block `i` rewritten (a teacher's edit); the text is checked as when read."""
        heading = self.blocks[i].heading if heading is None else heading.strip()
        if not body.endswith("\n"):
            body += "\n"
        try:
            block = parse_block(heading, body, self.blocks[i].line)
        except ValueError as exc:
            raise LessonError(f"{self._where()}{self.label(i)}: {exc}") from None
        blocks = list(self.blocks)
        blocks[i] = block
        edited = replace(self, blocks=blocks)
        return loads(edited.dumps(), self.name, self.path)  # read back: the blocks below get their new lines

    def _where(self) -> str:
        return f"{self.path.name}: " if self.path is not None else (f"{self.name}: " if self.name else "")

    def dumps(self) -> str:
        parts = [f"{FENCE}\n{self.front}{FENCE}\n", self.intro]
        parts += [f"## {b.heading}\n{b.body}" for b in self.blocks]
        return "".join(parts)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.dumps(), encoding="utf-8")
        return path


def loads(text: str, name: str = "", path: Path | None = None) -> Lesson:
    """Parse a lesson; LessonError names the file and the block that is wrong."""
    where = f"{path.name}: " if path is not None else (f"{name}: " if name else "")
    text = text.replace("\r\n", "\n")
    meta, front, end = _front_matter(text, where)
    rest = text[end + len(FENCE) + 2:]
    first_line = text[: end + len(FENCE) + 2].count("\n") + 1
    pieces = re.split(r"^## ", rest, flags=re.M)
    intro, blocks = pieces[0], []
    line = first_line + intro.count("\n")
    for piece in pieces[1:]:
        heading, _, body = piece.partition("\n")
        try:
            blocks.append(parse_block(heading, body, line))
        except ValueError as exc:
            raise LessonError(f"{where}block {len(blocks) + 1} (line {line}) `## {heading.strip()}`: {exc}") from None
        line += 1 + body.count("\n")
    if not blocks:
        raise LessonError(f"{where}the lesson has no blocks; each starts with a `## at ...` heading")
    return Lesson(meta, blocks, front, intro, path, name or (path.stem if path else ""))


def _front_matter(text: str, where: str) -> tuple[dict[str, Any], str, int]:
    """The front matter checked, its text, and where its closing fence starts."""
    if not text.startswith(FENCE + "\n"):
        raise LessonError(f"{where}a lesson starts with a `{FENCE}` line opening its front matter")
    end = text.find(f"\n{FENCE}\n", len(FENCE))
    if end < 0:
        raise LessonError(f"{where}the front matter has no closing `{FENCE}` line")
    front = text[len(FENCE) + 1: end + 1]
    try:
        meta = tomllib.loads(front)
    except tomllib.TOMLDecodeError as exc:
        raise LessonError(f"{where}front matter: {exc}") from None
    _check_front(meta, where)
    return meta, front, end


def _check_front(meta: dict[str, Any], where: str) -> None:
    version = meta.get("format")
    if version != FORMAT:
        raise LessonError(f"{where}front matter: format must be {FORMAT!r}, got {version!r}")
    if not isinstance(meta.get("model"), str) or not meta["model"]:
        raise LessonError(f"{where}front matter: `model` names a built-in example or a model file")
    unknown = sorted(set(meta) - FRONT_KEYS)
    if unknown:
        raise LessonError(f"{where}front matter: unknown key {unknown[0]!r}; keys: {', '.join(sorted(FRONT_KEYS))}")
    if "seed" in meta and not isinstance(meta["seed"], int):
        raise LessonError(f"{where}front matter: seed must be a whole number")


# -- finding lessons ---------------------------------------------------------------------------------
def _builtin_dir() -> Any:
    return resources.files("propscope.debugger").joinpath("lessons")


def builtin_lessons() -> dict[str, str]:
    """The lessons that ship with propscope: name -> title, in the tutorial's order."""
    out = {}
    for entry in sorted(_builtin_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(SUFFIX):
            name = entry.name[: -len(SUFFIX)]
            # the front matter only: the File menu is built at start-up, each block is parsed when opened
            meta, _, _ = _front_matter(entry.read_text(encoding="utf-8").replace("\r\n", "\n"), f"{name}: ")
            out[name] = str(meta.get("title", name))
    return out


def load_lesson(name_or_file: str | Path) -> Lesson:
    """A built-in lesson by name (`part-07-xor`, or just `7`), or a lesson file."""
    path = Path(name_or_file)
    if path.suffix == SUFFIX and path.is_file():
        return loads(path.read_text(encoding="utf-8"), path=path.resolve())
    key = str(name_or_file)
    names = list(builtin_lessons())
    part = f"part-{int(key):02d}" if key.isdigit() else None  # `7` for part-07-xor
    match = [n for n in names if n == key] or [n for n in names if part and n.startswith(part)]
    if not match:
        raise LessonError(f"no lesson {key!r}: not a lesson file, and the built-in lessons are {', '.join(names)}")
    entry = _builtin_dir().joinpath(match[0] + SUFFIX)
    with resources.as_file(entry) as real:
        return loads(real.read_text(encoding="utf-8"), match[0], path=Path(real))


def open_lesson_session(lesson: Lesson, seed: int | None = None) -> Session:
    """The session a lesson runs on: its model, data, backend and dtype."""
    m = lesson.meta
    data = m.get("data")
    if data and lesson.path is not None:
        data = str((lesson.path.parent / data).resolve())
    try:
        return open_session(lesson.model_target(), backend=m.get("backend", "numpy"), dtype=m.get("dtype", "float64"),
                            seed=m.get("seed", 0) if seed is None else seed, data=data, loss=m.get("loss"),
                            device=m.get("device", "cpu"))
    except PropscopeError as exc:
        raise LessonError(f"{lesson._where()}model {lesson.model!r}: {exc}") from None


# -- fitting a lesson to its session -------------------------------------------------------------------
def resolve(lesson: Lesson, session: Session) -> list[int]:
    """The cursor position of every block; LessonError names the first block that does not fit the model."""
    positions = []
    previous = 0
    for i, block in enumerate(lesson.blocks):
        try:
            _validate(block, session)
            pos = block.anchor.position(session)
            if not block.trains and pos < previous:
                raise LessonError(f"it comes before the block above it (step {pos} < {previous}); "
                                  "blocks follow the pass in order")
        except (LessonError, ValueError) as exc:
            raise LessonError(f"{lesson._where()}{lesson.label(i)}: {exc}") from None
        positions.append(pos)
        previous = pos
    return positions


def _validate(block: Block, session: Session) -> None:
    if block.anchor.kind == "node":
        _node(session, block.anchor.node)
    for action in block.actions:
        if action.verb in ("select", "explain", "breakpoint"):
            _element(session, action.element, action.verb == "select")
        elif action.verb == "backend":
            from ..backends import BACKENDS

            if action.args[0] not in BACKENDS:
                raise LessonError(f"unknown backend {action.args[0]!r}; backends: {', '.join(BACKENDS)}")
        elif action.verb == "optimizer":
            from ..backends.optimizers import OPTIMIZERS

            if action.args[0].lower() not in OPTIMIZERS:
                raise LessonError(f"unknown optimizer {action.args[0]!r}; optimizers: {', '.join(OPTIMIZERS)}")
    for check in block.checks:
        if check.element is not None:
            _element(session, check.element, False)
        if check.what == "local" and not (block.anchor.kind == "node" and block.anchor.phase == BACKWARD
                                          and check.element is not None
                                          and block.anchor.node == check.element.node):
            raise LessonError(f"`@check {check.text}` reads a local derivative: anchor the block at the backward "
                              f"step of that node")


def _node(session: Session, name: str) -> None:
    if name not in session.graph:
        near = [n.name for n in session.graph if name.lower() in n.name.lower()][:3]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise LessonError(f"unknown node {name!r} in {session.graph.name}{hint}")


def _element(session: Session, el: Element, loose: bool) -> None:
    _node(session, el.node)
    shape = session.graph[el.node].shape
    if not el.index:
        if not loose and int(np.prod(shape)) != 1:
            first = ", ".join("0" * len(shape))
            raise LessonError(f"{el.node} has shape {shape}; name one element, e.g. {el.node}[{first}]")
        return
    if len(el.index) != len(shape) or any(not 0 <= i < d for i, d in zip(el.index, shape, strict=True)):
        raise LessonError(f"{el} is not an element of {el.node}, whose shape is {shape}")


# -- playing a lesson ----------------------------------------------------------------------------------
@dataclass
class CheckResult:
    check: Check
    actual: float
    ok: bool

    def text(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.check.text} (propscope: {self.actual:.6g})"


@dataclass
class TrainingPlan:
    optimizer: str | None = None
    options: dict[str, float] = field(default_factory=dict)


class LessonPlayer:
    """Drives a session through a lesson, one key press at a time (`next`, `back`).

    A press reveals a pending answer; otherwise it steps the session towards the next block's anchor,
    and the block is shown when the cursor reaches it. A training block trains on the press that
    reaches it. Moving the cursor any other way (the step list, Home, End) shows the block for that
    step. Events fire after every change; `select_requested`/`explain_requested` ask a view to follow.
    """

    block_changed = Signal(int)
    answer_changed = Signal(bool)
    select_requested = Signal(str, tuple)
    explain_requested = Signal(str, tuple)
    failed = Signal(str)

    def __init__(self, lesson: Lesson, session: Session) -> None:
        self.lesson = lesson
        self.session = session
        self.positions = resolve(lesson, session)
        self.initial_params = session.parameters_numpy()
        self.index = 0
        self.answer_shown = False
        self.history: Any = None
        self.trained_epochs = 0
        self.first_epoch = 0  # the lesson's epoch count when the last training run began
        self.plan = TrainingPlan()
        self.results: dict[int, list[CheckResult]] = {}
        self.trainer: Any = None  # the Trainer while a training block trains (stop_training ends it early)
        self._moving = False
        session.cursor_moved.connect(self._cursor_moved)
        self._enter(0)

    def close(self) -> None:
        self.session.cursor_moved.disconnect(self._cursor_moved)

    def replace_lesson(self, lesson: Lesson) -> None:
        """The same lesson with edited blocks (a teacher's edit): checked against the session, then shown in place.

        LessonError (naming the block) leaves the player as it was."""
        positions = resolve(lesson, self.session)
        if len(lesson.blocks) != len(self.lesson.blocks):
            raise LessonError("an edit keeps the number of blocks")
        self.lesson, self.positions = lesson, positions
        self.results[self.index] = [self._check(c) for c in self.block.checks]
        self.block_changed.emit(self.index)

    @property
    def block(self) -> Block:
        return self.lesson.blocks[self.index]

    @property
    def at_end(self) -> bool:
        last = self.index == len(self.lesson.blocks) - 1
        return last and self.session.at_end and (not self.block.question or self.answer_shown)

    def stage_start(self, i: int | None = None) -> int:
        """The first block of the stage holding block `i`: blocks after one training run share its pass."""
        i = self.index if i is None else i
        while i > 0 and not self.lesson.blocks[i].trains:
            i -= 1
        return i

    # -- key presses ------------------------------------------------------------------------------
    def next(self) -> bool:
        """One press of Next (PageDown, →): False when there is nothing further."""
        if self.block.question and not self.answer_shown:
            self.answer_shown = True
            self.answer_changed.emit(True)
            return True
        following = self.index + 1
        if following < len(self.lesson.blocks):
            target = self.lesson.blocks[following]
            if target.trains or self.session.cursor >= self.positions[following]:
                self._enter(following)
                return True
            self._step(lambda s: s.step())
            if self.session.cursor >= self.positions[following]:
                self._enter(following)
            return True
        if self.session.at_end:
            return False
        self._step(lambda s: s.step())
        return True

    def next_trains(self) -> bool:
        """Whether the next press trains (the app runs that press off the GUI thread)."""
        if self.block.question and not self.answer_shown:
            return False
        following = self.index + 1
        return following < len(self.lesson.blocks) and self.lesson.blocks[following].trains

    @property
    def training(self) -> bool:
        return self.trainer is not None

    def stop_training(self) -> None:
        """End a training block's run after the current epoch (from any thread); the block shows what was reached."""
        trainer = self.trainer
        if trainer is not None:
            trainer.stop()

    def back(self) -> bool:
        """One press of Back: hide an answer just revealed, or step back (a training run is not undone)."""
        if self.block.question and self.answer_shown:
            self.answer_shown = False
            self.answer_changed.emit(False)
            return True
        cursor = self.session.cursor
        prev = self.index - 1
        if prev >= self.stage_start() and prev >= 0 and self.positions[prev] == cursor and not self.block.trains:
            self._show(prev, answer=bool(self.lesson.blocks[prev].question))
            return True
        if cursor == 0:
            return False
        self._step(lambda s: s.step_back())
        self._sync(self.session.cursor)
        return True

    def run_to_end(self) -> list[CheckResult]:
        """Press Next until the lesson is over (tests, `propscope lesson --check`); every check's result."""
        for _ in range(100_000):
            if not self.next():
                break
        return [r for i in sorted(self.results) for r in self.results[i]]

    # -- moving ---------------------------------------------------------------------------------------
    def _step(self, move: Callable[[Session], Any]) -> None:
        self._moving = True
        try:
            move(self.session)
        finally:
            self._moving = False

    def _cursor_moved(self, cursor: int) -> None:
        if not self._moving:
            self._sync(cursor)

    def _sync(self, cursor: int) -> None:
        """Show the last block of this stage whose position the cursor has reached."""
        start = self.stage_start()
        end = start + 1
        while end < len(self.lesson.blocks) and not self.lesson.blocks[end].trains:
            end += 1
        best = start
        for i in range(start, end):
            if self.positions[i] <= cursor:
                best = i
        if best != self.index:
            self._show(best)

    def _show(self, i: int, answer: bool = False) -> None:
        self.index = i
        self.answer_shown = answer
        self.block_changed.emit(i)

    def _enter(self, i: int) -> None:
        """Make block `i` current: train if it says so, move to its step, apply its actions, run its checks."""
        block = self.lesson.blocks[i]
        self._moving = True
        try:
            if block.trains:
                self._train(block)
            else:
                self.session.seek(self.positions[i])
            self.index, self.answer_shown = i, False
            for action in block.actions:
                if action.verb not in TRAINING_ACTIONS:
                    self._apply(action)
        except PropscopeError as exc:
            self.failed.emit(f"{self.lesson.label(i)}: {exc}")
        finally:
            self._moving = False
        self.results[i] = [self._check(c) for c in block.checks]
        self.block_changed.emit(i)

    def _train(self, block: Block) -> None:
        for action in block.actions:
            if action.verb == "restart":
                self.session.set_params(self.initial_params)
                self.trained_epochs = 0
            elif action.verb == "optimizer":
                self.plan = TrainingPlan(action.args[0].lower(), action.options())
        options: dict[str, Any] = dict(self.plan.options)
        lr = options.pop("lr", None)
        from .trainer import Trainer, TrainingDiverged

        self.first_epoch = self.trained_epochs
        self.session.check_runnable()
        trainer = Trainer(self.session, block.anchor.number, self.plan.optimizer, lr, **options)
        self.trainer = trainer
        try:
            history = trainer.run()
        finally:
            self.trainer = None
        self.history = self.session.history = history
        self.trained_epochs += len(history)
        self.session.reset()
        if history.nonfinite is not None:
            raise TrainingDiverged(history.nonfinite, history)

    def _apply(self, action: Action) -> None:
        s = self.session
        if action.verb == "select":
            el = action.element
            self.select_requested.emit(el.node, el.index)
        elif action.verb == "explain":
            el = action.element
            self.explain_requested.emit(el.node, el.index)
        elif action.verb == "breakpoint":
            s.add_breakpoint(action.element.node)
        elif action.verb == "backend":
            from ..backends import get_backend

            name = action.args[0]
            if s.backend.name != name:
                s.set_backend(get_backend(name, str(s.backend.dtype), str(s.backend.device)))

    def _check(self, check: Check) -> CheckResult:
        try:
            actual = check.actual(self.session, self.history, self.first_epoch)
        except (LessonError, KeyError) as exc:
            self.failed.emit(str(exc))
            return CheckResult(check, math.nan, False)
        return CheckResult(check, actual, check.holds(actual))

    def position_text(self) -> str:
        n = len(self.lesson.blocks)
        return f"{self.index + 1}/{n} · {self.block.heading}"


def iter_builtin() -> Iterator[Lesson]:
    for name in builtin_lessons():
        yield load_lesson(name)
