"""The fault injector: WSGI middleware in front of the embedded designrun.

Every request to ``/api/runner/…`` is recorded as an ``Exchange`` (what the runner sent, what the
server answered, which fault it got, when) and gets the fault the plan decides:

- ``lost``: the request goes through the app *first* (so it is committed), then the connection
  is shut down before a byte of the answer is written: the runner sees a dropped connection.
  This needs the server's socket (``werkzeug.socket``, which werkzeug's server provides);
- ``unavailable`` / ``rate_limited`` / ``refused``: answered 503 / 429 + ``Retry-After`` / 400
  at once, without touching the app (nothing is stored);
- ``slow``: the app answers, the answer is held back for a while.

Other paths pass through untouched and unrecorded.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from werkzeug.formparser import parse_form_data

from designrun.conformance.faults import (
    LOST,
    RATE_LIMITED,
    REFUSED,
    SLOW,
    UNAVAILABLE,
    Fault,
    FaultPlan,
)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_PATH = re.compile(r"^/api/runner/runs/([^/]+)/(status|events|artifacts|token)/?$")
_KEY_COUNTER = re.compile(r"^(.*):(\d+)$")
MAX_RECORDED_BODY = 64 * 1024 * 1024  # the kit's runs are small; a guard, not a limit to test

_INJECTED = {
    UNAVAILABLE: (
        "503 SERVICE UNAVAILABLE",
        "service_unavailable",
        "unavailable (fault injected by designrun-runner-check)",
    ),
    RATE_LIMITED: (
        "429 TOO MANY REQUESTS",
        "rate_limited",
        "too many requests (fault injected by designrun-runner-check)",
    ),
    REFUSED: (
        "400 BAD REQUEST",
        "invalid_request",
        "refused on purpose by designrun-runner-check: drop this request, do not retry it",
    ),
}


@dataclass
class SentEvent:
    """One event as the runner sent it."""

    key: str | None
    event_type: str
    content: str  # eventType, message and metadata as canonical JSON: "the same event"
    counter: tuple[str, int] | None  # (series, n): metadata.seq, else a key ending in ":<n>"


@dataclass
class Exchange:
    """One runner request and what became of it."""

    number: int  # arrival order, 1-based, across endpoints
    endpoint: str
    index: int  # arrival order on its endpoint, 1-based (what the plan saw)
    arrived: float  # seconds since the injector started
    fault: Fault | None
    token: str  # valid | expired | invalid | legacy | missing
    token_id: str  # a short hash of the bearer, to tell tokens apart
    token_expired_for: float | None = None  # seconds past its exp, for an expired one
    body: dict[str, Any] | None = None  # the JSON body (status, events, JSON registration)
    events: list[SentEvent] = field(default_factory=list)
    artifact_key: str | None = None  # the artifact's idempotencyKey
    artifact_name: str | None = None  # storageKey, else the uploaded file name
    status: int | None = None  # the HTTP status the server (or the injector) produced
    code: str | None = None
    delivered: bool = True  # False: the answer was lost on purpose
    answered: float | None = None  # seconds since start when the answer was sent (or dropped)
    answer: dict[str, Any] | None = None

    @property
    def event_ids(self) -> list[str]:
        answer = self.answer or {}
        if isinstance(answer.get("eventIds"), list):
            return [str(i) for i in answer["eventIds"]]
        return [str(answer["eventId"])] if answer.get("eventId") else []

    def describe(self) -> str:
        """One line naming the request: number, endpoint, what it carried, what became of it."""
        what = ""
        if self.endpoint == "events":
            what = f" ({len(self.events)} event{'s' if len(self.events) != 1 else ''})"
        elif self.endpoint == "status" and self.body is not None:
            shown = {k: v for k, v in self.body.items() if k in ("status", "progress")}
            what = f" {json.dumps(shown, separators=(',', ':'))}"
        elif self.endpoint == "artifacts" and self.artifact_name:
            what = f" ({self.artifact_name})"
        outcome = f"HTTP {self.status}" if self.status is not None else "no answer"
        if self.fault is not None:
            kind = self.fault.kind
            if kind == LOST:
                outcome = f"committed (HTTP {self.status}), answer lost"
            elif kind == SLOW:
                outcome = f"HTTP {self.status} after {self.fault.delay:.2f}s"
            elif kind == RATE_LIMITED:
                outcome = f"429 Retry-After {self.fault.retry_after}"
            outcome += f" [{kind}]"
        if self.token_expired_for is not None:
            outcome += f" [token expired {self.token_expired_for:.1f}s earlier]"
        return f"#{self.number} POST {self.endpoint}{what} at {self.arrived:.2f}s: {outcome}"


def canonical(value: Any) -> str:
    """Canonical JSON: two events are "the same" when this is equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sent_events(body: dict[str, Any]) -> list[SentEvent]:
    """The events of an events body (one event or a batch), as the runner sent them."""
    raw = body.get("events") if "events" in body else [body]
    events: list[SentEvent] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        key = item.get("idempotencyKey") if isinstance(item.get("idempotencyKey"), str) else None
        metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        content = canonical([item.get("eventType"), item.get("message"), metadata])
        events.append(
            SentEvent(key, str(item.get("eventType")), content, event_counter(key, metadata))
        )
    return events


def event_counter(key: str | None, metadata: Any) -> tuple[str, int] | None:
    """The runner's own per-event counter: ``metadata.seq``, else a key ending in ``:<n>``."""
    if isinstance(metadata, dict):
        seq = metadata.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return ("seq", seq)
    if key is not None:
        match = _KEY_COUNTER.match(key)
        if match is not None:
            return (match.group(1), int(match.group(2)))
    return None


class FaultInjector:
    """The middleware; ``exchanges`` is the record the scorecard reads."""

    def __init__(self, app: WSGIApp, plan: FaultPlan, secret: str) -> None:
        self.app = app
        self.plan = plan
        self.secret = secret
        self.started = time.monotonic()
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0

    def now(self) -> float:
        """Seconds since the injector started (the scorecard's clock)."""
        return time.monotonic() - self.started

    def wait_idle(self, timeout: float) -> None:
        """Wait until no runner request is being handled (the runner may just have exited)."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        match = _PATH.match(environ.get("PATH_INFO") or "")
        if match is None or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        with self._idle:
            self._in_flight += 1
        try:
            return self._handle(match.group(2), environ, start_response)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _handle(
        self, endpoint: str, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Any:
        arrived = self.now()
        raw = _read_body(environ)
        exchange = self._record(endpoint, environ, raw, arrived)
        fault = exchange.fault
        if fault is not None and fault.kind in _INJECTED:
            status, code, message = _INJECTED[fault.kind]
            headers = [("Content-Type", "application/json")]
            if fault.retry_after is not None:
                headers.append(("Retry-After", str(fault.retry_after)))
            payload = {"ok": False, "error": message, "code": code}
            exchange.status, exchange.code, exchange.answer = int(status[:3]), code, payload
            exchange.answered = self.now()
            start_response(status, headers)
            return [json.dumps(payload).encode()]
        status, headers, body = self._call_app(environ)
        exchange.status = int(status.split()[0])
        exchange.answer = _json(body)
        exchange.code = (exchange.answer or {}).get("code")
        if fault is not None and fault.kind == LOST:
            exchange.delivered = False
            exchange.answered = self.now()
            _drop_connection(environ)
            start_response(status, headers)
            return [body]  # writing it fails: the socket is shut down (werkzeug ignores that)
        if fault is not None and fault.kind == SLOW:
            time.sleep(fault.delay)
        exchange.answered = self.now()
        start_response(status, headers)
        return [body]

    def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return captured["status"], captured["headers"], body

    def _record(
        self, endpoint: str, environ: dict[str, Any], raw: bytes, arrived: float
    ) -> Exchange:
        token, token_id, expired_for = self._token(environ.get("HTTP_AUTHORIZATION") or "")
        body: dict[str, Any] | None = None
        events: list[SentEvent] = []
        artifact_key = artifact_name = None
        content_type = environ.get("CONTENT_TYPE") or ""
        if content_type.startswith("multipart/form-data"):
            artifact_key, artifact_name = _multipart_fields(environ, raw)
        else:
            body = _json(raw)
        if endpoint == "events" and body is not None:
            events = sent_events(body)
        if endpoint == "artifacts" and body is not None:
            key = body.get("idempotencyKey")
            artifact_key = key if isinstance(key, str) else None
            name = body.get("storageKey")
            artifact_name = name if isinstance(name, str) else None
        with self._lock:
            # A request the server would refuse anyway (bad token) gets no fault: the record
            # must show the runner's mistake, not the kit's.
            refusable = (endpoint == "events" and len(events) == 1) or (
                endpoint == "status"
                and body is not None
                and "status" not in body
                and "progress" in body
            )
            if token in ("valid", "legacy"):
                index, fault = self.plan.decide(endpoint, refusable=refusable)
            else:
                index, fault = 0, None
            exchange = Exchange(
                number=len(self.exchanges) + 1,
                endpoint=endpoint,
                index=index,
                arrived=arrived,
                fault=fault,
                token=token,
                token_id=token_id,
                token_expired_for=expired_for,
                body=body,
                events=events,
                artifact_key=artifact_key,
                artifact_name=artifact_name,
            )
            self.exchanges.append(exchange)
        return exchange

    def _token(self, header: str) -> tuple[str, str, float | None]:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "missing", "", None
        token_id = hashlib.sha256(token.encode()).hexdigest()[:8]
        if token == self.secret:
            return "legacy", token_id, None
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=["HS256"], options={"verify_exp": False}
            )
        except jwt.PyJWTError:
            return "invalid", token_id, None
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp <= time.time():
            return "expired", token_id, time.time() - exp
        return "valid", token_id, None


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the whole request body and put it back, so the app can read it again."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        raw = stream.read(MAX_RECORDED_BODY)
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        raw = stream.read(min(length, MAX_RECORDED_BODY)) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ["wsgi.input_terminated"] = False
    return raw


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _multipart_fields(environ: dict[str, Any], raw: bytes) -> tuple[str | None, str | None]:
    copy = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": environ.get("CONTENT_TYPE"),
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
    }
    try:
        _, form, files = parse_form_data(copy)
    except ValueError:
        return None, None
    upload = files.get("file")
    name = form.get("storageKey") or (upload.filename if upload is not None else None)
    for part in files.values():
        part.close()
    return form.get("idempotencyKey"), name


def _drop_connection(environ: dict[str, Any]) -> None:
    """Shut the runner's connection down before any byte of the answer is written."""
    sock = environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        raise RuntimeError("lost answers need werkzeug's server (environ['werkzeug.socket'])")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the runner already went away: the answer is lost either way
