"""The line protocol: how an agent reports structured information to designrun-runner.

An agent is a plain command. Whatever it writes on stdout or stderr is logged by the runner as log
events, except stdout lines of the form ``::designrun:: <one JSON object>``. The object may hold
any of these keys:

- ``progress``: a number in [0, 1];
- ``event``: ``{"eventType", "message"?, "metadata"?}``, the body of API.md's runner event
  (for example ``agent.tool_use`` with ``metadata = {"tool", "input"}``);
- ``artifact``: ``{"path", "artifactType", "contentType"?, "metadata"?}``: a file the agent
  produced, ``path`` relative to ``DESIGNRUN_OUTPUT_DIR``.

This is a wire format shared with agents we do not ship, so it only grows: new keys may be added,
and a reader ignores keys it does not know. JSON is written compactly with ASCII escapes, so a line
is always exactly one line (a newline inside a prompt is escaped) and the stream encoding does not
matter. Plain lines are UTF-8: a reader decodes them so, replacing undecodable bytes. This
module imports only the standard library, so any agent or runner can use it.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

MARKER: Final = "::designrun::"
PREFIX: Final = MARKER + " "

TOOL_USE: Final = "agent.tool_use"


def protocol_line(obj: Mapping[str, Any]) -> str:
    """Return the protocol line that carries obj, without a trailing newline.

    Raises TypeError when obj is not a mapping or holds something JSON cannot encode, and
    ValueError for NaN or infinity (JSON has neither).
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"a protocol line carries a JSON object, not {type(obj).__name__}")
    return PREFIX + json.dumps(dict(obj), ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_line(line: str) -> dict[str, Any] | None:
    """Return the object of a protocol line, or None for an ordinary output line.

    Readers are lenient about the space after the marker and a trailing newline. Raises
    ValueError when the line starts with the marker but does not hold one JSON object.
    """
    text = line.rstrip("\r\n")
    if not text.startswith(MARKER):
        return None
    # json.JSONDecodeError is a ValueError; NaN and Infinity are not JSON, so refuse them too.
    obj = json.loads(text[len(MARKER) :].strip(), parse_constant=_reject_constant)
    if not isinstance(obj, dict):
        raise ValueError("a protocol line must hold a JSON object")
    return obj


def emit(obj: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """Write obj as one protocol line to stream (default stdout) and flush it at once.

    Flushing matters: the runner reads the pipe line by line while the agent works, so a buffered
    line would reach it late (or, after a crash, never).
    """
    out = sys.stdout if stream is None else stream
    out.write(protocol_line(obj) + "\n")
    out.flush()


def progress(value: float) -> dict[str, Any]:
    """Return a progress report. Raises ValueError unless 0 <= value <= 1."""
    if isinstance(value, bool) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"progress must be a number in [0, 1], not {value!r}")
    return {"progress": value}


def event(
    event_type: str, message: str | None = None, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return an event report (API.md § runner events). Raises ValueError for an empty type."""
    if not event_type:
        raise ValueError("eventType must not be empty")
    body: dict[str, Any] = {"eventType": event_type}
    if message is not None:
        body["message"] = message
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return {"event": body}


def tool_use(
    tool: str, tool_input: Mapping[str, Any], message: str | None = None
) -> dict[str, Any]:
    """Return an ``agent.tool_use`` event; the message defaults to the tool and its path."""
    if message is None:
        path = tool_input.get("path")
        message = f"{tool} {path}" if path else tool
    return event(TOOL_USE, message, {"tool": tool, "input": dict(tool_input)})


def artifact(
    path: str,
    artifact_type: str,
    content_type: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return an artifact declaration for a file at path (relative to the output folder).

    Raises ValueError for an absolute path or one that climbs out of the output folder; the runner
    checks this again, since it cannot trust an agent it did not write.
    """
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise ValueError(f"artifact path must be relative to the output folder: {path!r}")
    if not artifact_type:
        raise ValueError("artifactType must not be empty")
    body: dict[str, Any] = {"path": path, "artifactType": artifact_type}
    if content_type is not None:
        body["contentType"] = content_type
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return {"artifact": body}
