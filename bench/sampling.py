"""Sampling profiles of the gunicorn workers with py-spy, summarised as text.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``). The summary
counts, per function, the samples in which it is on the stack (inclusive) and on top of it
(self), as a share of the samples taken. Only threads holding the GIL are sampled (``--gil``):
the Python CPU time of each process. Without it, a thread waiting to take the GIL back (after
a syscall, a sqlite3 call) looked busy in whatever it had called last: gthread's wake-up
``os.write`` showed as 20 % of the "work" (bench/README.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from harness import VENV_BIN

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy executable, or None when it is not installed."""
    local = VENV_BIN / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(master_pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """Record every worker of the gunicorn ``master_pid`` for ``seconds`` into ``output``."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (.venv/bin/pip install py-spy)")
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(master_pid),
            "--subprocesses",
            "--nonblocking",
            "--gil",
            "--rate",
            "200",
            "--format",
            "raw",
            "--duration",
            str(max(1, round(seconds))),
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _label(frame: str, keep_line: bool = False) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    path = path.split("/work/main/", 1)[-1]
    if keep_line:
        line = frame.rsplit(":", 1)[-1].rstrip(")") if frame.count(":") else ""
        path = f"{path}:{line}" if line.isdigit() else path
    return f"{match['func']} ({path})"


def _is_scaffolding(label: str) -> bool:
    """gunicorn's loop and Flask's entry frames: on every busy stack, they say nothing."""
    return "(gunicorn" in label or label.startswith(("Flask.__call__", "Flask.wsgi_app"))


def summarise(raw: Path, top: int = 14) -> str:
    """Where the busy samples go in a raw py-spy file, three ways.

    - by the innermost designrun frame with its line (which statement of ours is running),
    - inclusive share of each function below gunicorn's loop (what a call costs in all),
    - self share (the frame on top of the stack).
    """
    ours: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        count = int(match["count"])
        frames = [f for f in match["stack"].split(";") if f and "(" in f]
        if not frames:
            continue
        total += count
        mine = [f for f in frames if "designrun/" in f]
        ours[_label(mine[-1], keep_line=True) if mine else "(outside designrun code)"] += count
        for name in {_label(f) for f in frames}:
            if not _is_scaffolding(name):
                inclusive[name] += count
        own[_label(frames[-1])] += count
    if total == 0:
        return "  (no samples)"

    def block(title: str, counts: Counter[str], n: int) -> list[str]:
        rows = [f"    {100 * c / total:5.1f}%  {name}" for name, c in counts.most_common(n)]
        return [f"  {title}:", *rows]

    out = [f"  {total} samples of threads holding the GIL (Python CPU time)"]
    out += block("by innermost designrun frame", ours, top)
    out += block("inclusive, below gunicorn", inclusive, top)
    out += block("self", own, top // 2)
    return "\n".join(out)
