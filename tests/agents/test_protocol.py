"""The line protocol (designrun/agents/protocol.py): one JSON object per prefixed stdout line."""

from __future__ import annotations

import io
import math

import pytest

from designrun.agents import protocol
from designrun.agents.protocol import PREFIX, parse_line, protocol_line


def test_protocol_line_is_the_prefix_and_one_compact_json_object() -> None:
    line = protocol_line({"progress": 0.4})
    assert line == '::designrun:: {"progress":0.4}'
    assert line.startswith(PREFIX)
    assert parse_line(line) == {"progress": 0.4}


def test_protocol_line_stays_one_ascii_line_whatever_the_message_holds() -> None:
    message = 'line one\n::designrun:: {"progress": 1}\r\nBäckerei “café” ☕'
    line = protocol_line(protocol.event("agent.message", message))
    assert "\n" not in line and "\r" not in line, line
    assert line.isascii(), line
    assert parse_line(line) == {"event": {"eventType": "agent.message", "message": message}}


def test_protocol_line_refuses_non_objects_and_nan() -> None:
    with pytest.raises(TypeError):
        protocol_line([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="JSON"):
        protocol_line({"progress": math.nan})


@pytest.mark.parametrize("line", ["", "hello", " ::designrun:: {}", "::design run {}", "{}"])
def test_ordinary_lines_are_not_protocol_lines(line: str) -> None:
    assert parse_line(line) is None


def test_parse_line_is_lenient_about_spacing_and_line_ends() -> None:
    assert parse_line('::designrun::{"progress":1}\r\n') == {"progress": 1}
    assert parse_line('::designrun::   {"progress":1}\n') == {"progress": 1}


@pytest.mark.parametrize(
    "line",
    ["::designrun:: ", "::designrun:: {oops", "::designrun:: [1]", '::designrun:: "x"',
     '::designrun:: {"progress": NaN}'],
)  # fmt: skip
def test_malformed_protocol_lines_raise_value_error(line: str) -> None:
    with pytest.raises(ValueError):
        parse_line(line)


def test_emit_writes_one_flushed_line() -> None:
    stream = io.StringIO()
    protocol.emit(protocol.progress(1.0), stream)
    assert stream.getvalue() == '::designrun:: {"progress":1.0}\n'


@pytest.mark.parametrize("value", [-0.1, 1.01, math.nan, math.inf, True])
def test_progress_outside_0_to_1_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="progress"):
        protocol.progress(value)


def test_tool_use_matches_the_documented_shape() -> None:
    assert protocol.tool_use("write_file", {"path": "index.html"}) == {
        "event": {
            "eventType": "agent.tool_use",
            "message": "write_file index.html",
            "metadata": {"tool": "write_file", "input": {"path": "index.html"}},
        }
    }


def test_artifact_matches_the_documented_shape() -> None:
    assert protocol.artifact("index.html", "source", "text/html", {"a": 1}) == {
        "artifact": {
            "path": "index.html",
            "artifactType": "source",
            "contentType": "text/html",
            "metadata": {"a": 1},
        }
    }
    assert protocol.artifact("site/app.js", "source") == {
        "artifact": {"path": "site/app.js", "artifactType": "source"}
    }


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../../b", "\\\\host\\x", "C:/x"])
def test_artifact_paths_must_stay_inside_the_output_folder(path: str) -> None:
    with pytest.raises(ValueError, match="relative"):
        protocol.artifact(path, "source")


def test_event_type_and_artifact_type_must_not_be_empty() -> None:
    with pytest.raises(ValueError):
        protocol.event("")
    with pytest.raises(ValueError):
        protocol.artifact("a.txt", "")
