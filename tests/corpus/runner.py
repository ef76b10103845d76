"""Open files in a child process under a 4 GiB address-space limit, each within 60 s, and classify each
outcome: `opened`, `refused` (a one-line PropscopeError), `bug` (any other exception: its traceback),
`hang` (over the time limit). The parent sees a crash (a signal, a segfault) as the child's exit status.

Run as `python tests/corpus/runner.py JOBS.json`; each job is {"path", "kind"} with kind `open` (the
reader table), `tensors` (a state dict's tensors) or `cli` (+ "argv": `propscope` main with argv, whose
stderr must be one line). One JSON result per line on stdout.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

ADDRESS_SPACE = 4 * 2**30
TIME_LIMIT_S = 60


class Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang()


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    from propscope.cli import main
    from propscope.graph.errors import PropscopeError
    from propscope.graph.readers import open_model
    from propscope.graph.readers.state_dict import read_tensors

    out: dict[str, Any] = {"path": job["path"]}
    signal.alarm(TIME_LIMIT_S)
    try:
        if job["kind"] == "cli":
            err, std = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
                out["rc"] = main(job["argv"])
            out["stderr"], out["stdout_chars"] = err.getvalue(), len(std.getvalue())
            out["outcome"] = "opened" if out["rc"] == 0 else "refused"
        elif job["kind"] == "tensors":
            read_tensors(job["path"])
            out["outcome"] = "opened"
        else:
            open_model(job["path"])
            out["outcome"] = "opened"
    except PropscopeError as exc:
        out["outcome"], out["message"] = "refused", str(exc)
    except Hang:
        out["outcome"] = "hang"
    except BaseException as exc:  # every other outcome is what the fuzzer looks for
        out["outcome"], out["message"] = "bug", f"{type(exc).__name__}: {str(exc)[:300]}"
        out["traceback"] = traceback.format_exc()[-3000:]
    finally:
        signal.alarm(0)
    return out


def child(jobs_file: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    signal.signal(signal.SIGALRM, _alarm)
    for job in json.loads(Path(jobs_file).read_text()):
        print(json.dumps(run_one(job)), flush=True)


def run_jobs(jobs: list[dict[str, Any]], folder: Path, timeout: float = 600) -> tuple[list[dict[str, Any]], int,
                                                                                       str]:
    """Run `jobs` in one child; (results, exit status, stderr). A crash ends the list early."""
    jobs_file = folder / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(jobs_file)], capture_output=True,
                          text=True, timeout=timeout, cwd=folder, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin",
                                                                      "QT_QPA_PLATFORM": "offscreen"})
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return results, proc.returncode, proc.stderr


if __name__ == "__main__":
    child(sys.argv[1])
