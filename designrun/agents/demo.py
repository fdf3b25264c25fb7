"""The demo design agent: ``python -m designrun.agents.demo``.

Offline and deterministic. From the prompt it derives a design system and writes five files into
the output folder: ``design-system.json``, ``styles.css``, ``index.html``, ``preview.png`` and
``report.md``. It reports as it goes through the line protocol (protocol.py): progress, a plan
event, one ``agent.tool_use`` event per file and one artifact declaration per file; plain lines say
the same for people reading the log. It pauses between steps so a person can watch a run progress.

It is the default agent of designrun-runner; ``LOCAL_RUNNER_COMMAND`` replaces it with a real one.
It imports nothing from the server side (Flask, models, services): only the standard library,
Pillow and its sibling modules.

Environment:
    DESIGNRUN_PROMPT      the user's prompt (required). A prompt containing ``[fail]`` makes the
                          agent fail on purpose after writing design-system.json (exit 3).
    DESIGNRUN_CONFIG      a JSON object (optional): ``theme`` ("light" or "dark") and ``seed``
                          (replaces the prompt's hash) are read, other keys are ignored.
    DESIGNRUN_RUN_ID      the run's id (optional; only logged: outputs must not depend on it).
    DESIGNRUN_OUTPUT_DIR  where the files go (default ./output; created if missing).
    DESIGNRUN_DEMO_DELAY  seconds to pause before each step (default 0.5: about 5 s in all).

Exit status: 0 done; 1 an output file could not be written; 2 bad environment; 3 ``[fail]``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from designrun.agents import protocol
from designrun.agents.content import FAIL_MARK, one_line
from designrun.agents.design_system import DesignSystem, build_design_system
from designrun.agents.preview import HEIGHT, WIDTH, render_preview
from designrun.agents.report import render_report
from designrun.agents.site import render_css, render_html

EXIT_OK = 0
EXIT_OUTPUT_ERROR = 1
EXIT_USAGE = 2
EXIT_ASKED_TO_FAIL = 3

DEFAULT_DELAY = 0.5  # seconds; 8 pauses, so a run takes about 5 s with start-up
DEFAULT_OUTPUT_DIR = "output"
NAME = "designrun demo agent"

# (path, artifactType, contentType, what it is), in the order they are written.
FILES: tuple[tuple[str, str, str, str], ...] = (
    ("design-system.json", "design-system", "application/json", "palette, type scale, spacing"),
    ("styles.css", "source", "text/css", "the stylesheet, tokens as custom properties"),
    ("index.html", "source", "text/html", "the landing page"),
    ("preview.png", "preview", "image/png", f"palette and type specimen, {WIDTH}x{HEIGHT}"),
    ("report.md", "report", "text/markdown", "what was made and why"),
)


class UsageError(Exception):
    """The environment does not describe a run this agent can do (exit 2)."""


@dataclass(frozen=True)
class Settings:
    prompt: str
    config: dict[str, Any]
    run_id: str | None
    output_dir: Path
    delay: float


def read_settings(environ: Mapping[str, str]) -> Settings:
    """Read the agent's settings from the environment. Raises UsageError naming the variable."""
    prompt = environ.get("DESIGNRUN_PROMPT")
    if prompt is None:
        raise UsageError("DESIGNRUN_PROMPT is not set: the agent needs a prompt to design from")
    if not prompt.strip():
        raise UsageError("DESIGNRUN_PROMPT is empty: the agent needs a prompt to design from")

    raw_config = environ.get("DESIGNRUN_CONFIG", "").strip()
    try:
        config = json.loads(raw_config) if raw_config else {}
    except ValueError as exc:
        raise UsageError(f"DESIGNRUN_CONFIG is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise UsageError("DESIGNRUN_CONFIG must be a JSON object")

    raw_delay = environ.get("DESIGNRUN_DEMO_DELAY", "").strip()
    try:
        delay = float(raw_delay) if raw_delay else DEFAULT_DELAY
    except ValueError:
        raise UsageError(
            f"DESIGNRUN_DEMO_DELAY must be a number of seconds: {raw_delay!r}"
        ) from None
    if not math.isfinite(delay) or delay < 0:
        raise UsageError(f"DESIGNRUN_DEMO_DELAY must be 0 or more seconds: {raw_delay!r}")

    output_dir = Path(environ.get("DESIGNRUN_OUTPUT_DIR") or DEFAULT_OUTPUT_DIR)
    return Settings(prompt, config, environ.get("DESIGNRUN_RUN_ID") or None, output_dir, delay)


class Agent:
    """One run's voice: human lines and protocol lines on out, errors on err, pauses between."""

    def __init__(
        self,
        settings: Settings,
        out: TextIO,
        err: TextIO,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.out = out
        self.err = err
        self.sleep = sleep
        self.last_progress = 0.0

    def say(self, text: str) -> None:
        # stdout is this program's interface (the runner logs plain lines), so write, not log.
        self.out.write(text + "\n")
        self.out.flush()

    def fail(self, text: str) -> None:
        self.err.write(f"error: {text}\n")
        self.err.flush()

    def progress(self, value: float) -> None:
        # Never report going backwards: the server would accept it, but a person would not.
        self.last_progress = max(self.last_progress, value)
        protocol.emit(protocol.progress(self.last_progress), self.out)

    def pause(self) -> None:
        if self.settings.delay:
            self.sleep(self.settings.delay)

    def write_file(self, name: str, data: bytes, extra: Mapping[str, Any] | None = None) -> None:
        """Announce a write (tool use), write the file, then declare it as an artifact.

        Raises OSError when the file cannot be written.
        """
        _, artifact_type, content_type, description = next(f for f in FILES if f[0] == name)
        self.say(f"Writing {name} ({description}, {len(data)} bytes)")
        protocol.emit(protocol.tool_use("write_file", {"path": name, "bytes": len(data)}), self.out)
        path = self.settings.output_dir / name
        # Write beside, then rename: whoever watches the folder never sees half a file.
        partial = path.with_name(f".{name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
        metadata = {"description": description, "sha256": hashlib.sha256(data).hexdigest()}
        metadata.update(extra or {})
        protocol.emit(protocol.artifact(name, artifact_type, content_type, metadata), self.out)


def run(
    settings: Settings,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Do one run and return the exit status (the module's main contract; see the docstring)."""
    agent = Agent(settings, out or sys.stdout, err or sys.stderr, sleep)
    try:
        return _steps(agent)
    except OSError as exc:
        agent.fail(f"cannot write to {settings.output_dir}: {exc}")
        return EXIT_OUTPUT_ERROR


def _steps(agent: Agent) -> int:
    settings = agent.settings
    # Not the folder's path: on a runner host it is a private temp path (users see this line).
    agent.say(f"{NAME}: run {settings.run_id or '(no run id)'}, writing to its output folder")
    agent.progress(0.0)
    agent.say(f"Reading the prompt: “{one_line(settings.prompt, 100)}”")
    ds = build_design_system(settings.prompt, settings.config)
    agent.pause()
    protocol.emit(
        protocol.event(
            "agent.plan",
            "Plan: read the prompt, choose a palette, a type scale and spacing, then write "
            + ", ".join(name for name, *_ in FILES),
            {"seed": ds.seed, "files": [name for name, *_ in FILES]},
        ),
        agent.out,
    )
    keywords = ", ".join(ds.traits.keywords) or "none I know"
    agent.say(f"Seed {ds.seed}; keywords: {keywords}; {ds.traits.mood} mood, {ds.traits.theme}")
    agent.progress(0.1)

    agent.pause()
    _say_palette(agent, ds)
    agent.progress(0.2)

    agent.pause()
    agent.say(
        f"Type scale: {ds.ratio_name} ({ds.ratio}) from {ds.base_px}px; headings in "
        f"{ds.fonts['heading']}, body in {ds.fonts['body']}; spacing unit {ds.spacing_unit}px"
    )
    agent.progress(0.3)

    agent.pause()
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    document = json.dumps(ds.to_json(), indent=2, ensure_ascii=False) + "\n"
    agent.write_file("design-system.json", document.encode("utf-8"))
    agent.progress(0.4)

    if FAIL_MARK in settings.prompt.casefold():
        agent.pause()
        agent.fail(f"the prompt contains {FAIL_MARK}, so the demo agent stops here on purpose")
        return EXIT_ASKED_TO_FAIL

    agent.pause()
    agent.write_file("styles.css", render_css(ds).encode("utf-8"))
    agent.progress(0.5)

    agent.pause()
    agent.write_file("index.html", render_html(ds).encode("utf-8"))
    agent.progress(0.65)

    agent.pause()
    agent.say(f"Rendering the preview ({WIDTH}x{HEIGHT}): swatches, contrast checks, type scale")
    agent.write_file("preview.png", render_preview(ds), {"width": WIDTH, "height": HEIGHT})
    agent.progress(0.8)

    agent.pause()
    files = [(name, what) for name, _, _, what in FILES]
    agent.write_file("report.md", render_report(ds, files).encode("utf-8"))
    agent.progress(0.9)

    agent.say(f"Done: {len(FILES)} files for “{one_line(ds.title)}” in the output folder")
    agent.progress(1.0)
    return EXIT_OK


def _say_palette(agent: Agent, ds: DesignSystem) -> None:
    t = ds.traits
    agent.say(
        f"Choosing a palette for “{ds.title}”: hue {t.hue}° ({t.hue_source}), "
        f"{ds.harmony} accent, {t.theme} theme"
    )
    agent.say("Palette: " + ", ".join(f"{name} {value}" for name, value in ds.colors.items()))
    for check in ds.contrast:
        verdict = "ok" if check.passes else f"below {check.minimum}:1"
        agent.say(
            f"  contrast {check.foreground} on {check.background} ({check.usage}): "
            f"{check.ratio}:1 {check.level}, {verdict}"
        )


def _utf8_output() -> None:
    """Write stdout and stderr as UTF-8 whatever the locale says, and never fail on a character.

    The prompt may hold any character and we echo it; a Latin-1 or ASCII locale would otherwise
    make a write raise UnicodeEncodeError mid-run. Agents write UTF-8 (protocol.py).
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8", errors="backslashreplace")


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run the agent with settings from environ (default os.environ); return the exit status."""
    try:
        settings = read_settings(os.environ if environ is None else environ)
    except UsageError as exc:
        sys.stderr.write(f"{NAME}: {exc}\n")
        return EXIT_USAGE
    return run(settings)


if __name__ == "__main__":
    _utf8_output()
    sys.exit(main())
