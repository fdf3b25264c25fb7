"""The wire side of the runner client: errors, limits, checks, retry timing, multipart.

Split from client.py (which keeps ``RunnerClient``); standard library and ``requests`` only.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import IO, Any

import requests

from designrun.text import string_problem

log = logging.getLogger("designrun.runner")


STATUSES = frozenset({"running", "completed", "failed", "cancelled"})
MAX_BATCH = 1000  # API.md: a batch carries 1 to 1000 events
# API.md § Details pinned, Limits: checked here too, so that a bad event fails in event() at once
# instead of being refused by the server later, far from the code that made it.
MAX_EVENT_TYPE = 100
MAX_MESSAGE = 65_536
MAX_JSON_OBJECT_BYTES = 64 * 1024
_CALLBACK_PATH = re.compile(r"/api/runner/runs/([^/]+)/?$")
_CHUNK = 64 * 1024
_FILE_CHUNK = 256 * 1024  # bytes per send of an uploaded file
_RETRYABLE_EXCEPTIONS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class RunnerError(Exception):
    """A runner API call failed for good (a 4xx, or retries exhausted).

    ``status`` is the last HTTP status (``None`` for a connection error), ``code`` the API's
    machine code when the server sent one, ``retryable`` whether a later attempt may succeed.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable


class RunCancelled(RunnerError):
    """The run is terminal server-side (``409 run_finished``): the runner must stop."""

    def __init__(self, message: str, *, run_status: str | None) -> None:
        super().__init__(message, status=409, code="run_finished")
        self.run_status = run_status


class _Interrupted(Exception):
    """The background flusher gives way (to close() or an explicit flush())."""


@dataclass(slots=True)
class _Event:
    number: int
    enqueued_at: float
    wire: dict[str, Any]


@dataclass(slots=True)
class _Upload:
    path: str
    fields: list[tuple[str, str]]
    filename: str
    content_type: str


def run_id_from_callback(callback_url: str) -> str:
    """The run id at the end of a callback URL (``…/api/runner/runs/<runId>``)."""
    parts = urllib.parse.urlsplit(callback_url)
    match = _CALLBACK_PATH.search(parts.path or "")
    if parts.scheme not in ("http", "https") or not parts.netloc or match is None:
        raise ValueError("callback_url: expected http(s)://…/api/runner/runs/<runId>")
    return match.group(1)


def _jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, read without verification (only to learn ``exp``); else None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def _check_strings(value: Any, path: str) -> None:
    # The server's own rule (designrun/text.py): refuse early what it would refuse.
    problem = string_problem(value, path)
    if problem is not None:
        raise ValueError(problem)


def _json_object(value: Any, name: str) -> dict[str, Any]:
    """A deep copy of a JSON object within the API's 64 KiB limit, or ValueError/TypeError."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: must be a dict")
    text = json.dumps(dict(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    _check_strings(value, name)
    size = len(text.encode("utf-8"))
    if size > MAX_JSON_OBJECT_BYTES:
        raise ValueError(f"{name}: must be at most {MAX_JSON_OBJECT_BYTES} bytes as JSON ({size})")
    copy: dict[str, Any] = json.loads(text)
    return copy


def _progress(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("progress: must be a finite number")
    return float(value)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _response_json(response: requests.Response) -> dict[str, Any] | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


class _MultipartBody:
    """A multipart/form-data body read from an open file in chunks, with a known length.

    ``requests`` sends an object with ``__iter__``/``__len__`` as a stream with a
    ``Content-Length`` header, so the file is never held whole in memory. It has no ``read``
    on purpose: urllib3 would then send it in 16 KiB blocks (one system call each); iterated,
    it goes in chunks of _FILE_CHUNK.
    """

    def __init__(self, head: bytes, file: IO[bytes], file_size: int, tail: bytes) -> None:
        self._head = head
        self._file = file
        self._left = file_size
        self._tail = tail
        self._length = len(head) + file_size + len(tail)

    def __len__(self) -> int:
        return self._length

    def _read(self, size: int) -> bytes:
        if self._head:
            chunk, self._head = self._head[:size], self._head[size:]
            return chunk
        if self._left > 0:
            chunk = self._file.read(min(size, self._left))
            if not chunk:
                raise OSError("the file shrank while it was being uploaded")
            self._left -= len(chunk)
            return chunk
        chunk, self._tail = self._tail[:size], self._tail[size:]
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._read(_FILE_CHUNK):
            yield chunk


def _quote_header(value: str) -> bytes:
    # HTML's multipart/form-data encoding: UTF-8, with '"', CR and LF percent-escaped.
    escaped = value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    return escaped.encode("utf-8")
