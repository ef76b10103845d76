"""Export for slides: the pass as an animation or numbered PNGs, the graph as SVG/PNG, the formula as LaTeX/PNG.

`export(session, out, ...)` picks what to write from the file name: `.gif`, `.mp4` or a folder (no
suffix) is the pass, one frame per step plus the state before the first; `.svg` or `.png` is the graph;
`.tex` is the current step's chain rule in LaTeX, and `--formula` with `.png` its picture. The app uses
the same functions from File > Export (`menu.py`, `dialog.py`), rendering a copy of the session so that its
own cursor does not move. The drawing (`render.py`, with QtSvg) and the LaTeX (`latex.py`) are imported by
the functions that use them, so the window's File ▸ Export costs its start-up nothing more.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

from ...debugger import Session
from .writers import ExportError, pass_writer, video_available

PASS_SUFFIXES = (".gif", ".mp4", "")
GRAPH_SUFFIXES = (".svg", ".png")
DEFAULT_SIZE = (1280, 720)
DEFAULT_PACE_S = 0.8

__all__ = [
    "ExportCancelled", "ExportError", "ExportOptions", "Progress", "export", "export_formula", "export_graph",
    "export_pass", "parse_steps", "pass_frames", "session_copy", "video_available",
]

class ExportCancelled(ExportError):
    pass


Progress = Callable[[int, int], bool]  # (frames done, frames in all) -> go on? False cancels


@dataclass(frozen=True)
class ExportOptions:
    size: tuple[int, int] = DEFAULT_SIZE
    projector: bool = False
    first: int = 0  # the first frame is the pass after this many steps (0: before the first step)
    last: int | None = None  # the last frame's cursor (None: the end of the pass)
    seconds_per_frame: float = DEFAULT_PACE_S
    caption: bool = True
    whole: bool = False  # the whole graph in every frame, however small (else a big graph follows the step)

    def frames(self, session: Session) -> range:
        total = len(session.steps)
        last = total if self.last is None else self.last
        if not 0 <= self.first <= last <= total:
            raise ExportError(f"steps {self.first}:{last} are outside the pass (0 to {total})")
        return range(self.first, last + 1)


def parse_steps(text: str) -> tuple[int, int | None]:
    """`3:7` (the pass after 3 steps to after 7), `3:` (to the end), `:7`, or `5` (one frame)."""
    first, sep, last = text.partition(":")
    try:
        a = int(first) if first.strip() else 0
        b = (int(last) if last.strip() else None) if sep else a
    except ValueError:
        raise ExportError(f"--steps {text!r} is not FIRST:LAST, e.g. 0:10 or 5:") from None
    return a, b


def session_copy(session: Session) -> Session:
    """A session on the same model, weights, batch and backend, at the start: rendering it moves its cursor,
    never the one the user is looking at."""
    model = dataclasses.replace(session.model, arrays={**session.model.arrays, **session.parameters_numpy()})
    batch = {k: v for k, v in session.batch.items()}
    return Session(model, session.backend, batch, session.loss_name or "none", name=session.name)


def export_pass(session: Session, out: str | Path, options: ExportOptions = ExportOptions(),
                progress: Progress | None = None) -> Path:
    """One frame per step in the range (the session's cursor moves; pass a copy). Cancelled: nothing written."""
    run = pass_frames(session, out, options)
    for done, total in run:
        if progress is not None and progress(done, total) is False:
            run.close()  # the writer aborts: no half-written file is left
            raise ExportCancelled("export cancelled")
    return Path(out)


def pass_frames(session: Session, out: str | Path, options: ExportOptions = ExportOptions()
                ) -> Generator[tuple[int, int], None, None]:
    """Render and write one frame per `next()`, yielding (frames done, frames in all); the file is complete
    when the generator ends. Closing it early (cancel) removes what was written. The app drives this from
    a timer, so the window stays responsive between frames."""
    from .render import PassRenderer

    out = Path(out)
    frames = options.frames(session)
    renderer = PassRenderer(session, options.size, options.projector, options.caption, options.whole)
    writer = pass_writer(out, options.size, options.seconds_per_frame)
    finished = False
    try:
        for done, cursor in enumerate(frames):
            writer.add(renderer.frame(cursor))
            yield done + 1, len(frames)
        writer.close()
        finished = True
    finally:
        if not finished:
            writer.abort()


def export_graph(session: Session, out: str | Path, size: tuple[int, int] = DEFAULT_SIZE, projector: bool = False,
                 cursor: int | None = None, whole: bool = False) -> Path:
    """The graph as SVG (text kept as text, always whole) or PNG, at `cursor` (default: where the session is); a
    PNG of a graph too big to read whole shows the part around the step, unless `whole`."""
    from .render import PassRenderer

    out = Path(out)
    renderer = PassRenderer(session, size, projector, whole=whole or out.suffix.lower() == ".svg")
    at = session.cursor if cursor is None else cursor
    if out.suffix.lower() == ".svg":
        renderer.write_svg(str(out), at)
    elif out.suffix.lower() == ".png":
        if not renderer.frame(at).save(str(out), "PNG"):
            raise ExportError(f"{out}: could not write the image")
    else:
        raise ExportError(f"{out}: the graph is exported as .svg or .png")
    return out


def export_formula(session: Session, out: str | Path, selected: str | None = None,
                   index: tuple[int, ...] | None = None, width: int = DEFAULT_SIZE[0], projector: bool = False) -> Path:
    """The chain rule at the session's cursor: `.tex` as LaTeX, `.png` as a picture."""
    from .latex import formula_latex
    from .render import formula_image

    out = Path(out)
    if out.suffix.lower() == ".tex":
        out.write_text(formula_latex(session, selected, index), encoding="utf-8")
    elif out.suffix.lower() == ".png":
        if not formula_image(session, selected, index, width, projector).save(str(out), "PNG"):
            raise ExportError(f"{out}: could not write the image")
    else:
        raise ExportError(f"{out}: the formula is exported as .tex (LaTeX) or .png")
    return out


def export(session: Session, out: str | Path, options: ExportOptions = ExportOptions(), formula: bool = False,
           cursor: int | None = None, progress: Progress | None = None) -> Path:
    """What the file name asks for (see the module's docstring)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if formula or suffix == ".tex":
        if cursor is not None:
            session.seek(cursor)
        return export_formula(session, out, width=options.size[0], projector=options.projector)
    if suffix in GRAPH_SUFFIXES:
        return export_graph(session, out, options.size, options.projector, cursor, options.whole)
    if suffix in PASS_SUFFIXES or out.is_dir():
        return export_pass(session, out, options, progress)
    raise ExportError(f"{out}: write .gif, .mp4 or a folder (the pass), .svg or .png (the graph), .tex (the formula)")


def terminal_progress(stream: object = None) -> Progress:
    """`frame 3/11` rewritten in place on a terminal; silent when the output is not one."""
    out = stream if stream is not None else sys.stderr

    def show(done: int, total: int) -> bool:
        if getattr(out, "isatty", lambda: False)():
            end = "\n" if done == total else ""
            print(f"\rexporting frame {done}/{total}", end=end, file=out, flush=True)  # type: ignore[call-overload]
        return True

    return show
