"""Observability at the edges: request ids, log format and Prometheus metrics.

One module, hooked into the app (``init_app``) and into gunicorn (``GunicornLogger``,
gunicorn.conf.py's hooks); services do not import it, they log with ``extra=`` fields.

Request ids: every response carries ``X-Request-ID`` (the client's when it sent a sane one,
else a new one). A logging filter puts it on every record logged while the request is served,
and gunicorn's access log reads it from the response header. The id travels on with the run's
trigger to the runner (job request header and body, local runner environment), and
``designrun.runner`` sends it back on each callback, so one run can be followed across hosts.

Metrics: ``prometheus_client``. Under gunicorn every worker writes its samples into
``PROMETHEUS_MULTIPROC_DIR`` (set up and cleaned by gunicorn.conf.py, dead workers marked in
``child_exit``) and ``/metrics`` aggregates the folder; without that variable (``flask run``,
tests) the process's own registry is served. Labels are route *templates*, statuses and reasons:
never a run id, so the number of series stays bounded.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event
from sqlalchemy.orm import Session

REQUEST_ID_HEADER = "X-Request-ID"
# A sane client id: short, printable, nothing a log parser or a header could trip on.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "designrun_request_id", default=None
)

# --- metrics (names and labels are part of the documented contract: docs/operations.md) --------

HTTP_REQUESTS = Counter(
    "designrun_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "designrun_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status",
    ["route", "method", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
EVENTS_INGESTED = Counter(
    "designrun_events_ingested",
    "Events accepted from runners (an idempotent repeat is counted again)",
)
RUNS_CREATED = Counter("designrun_runs_created", "Runs created")
RUNS_FINISHED = Counter(
    "designrun_runs_finished",
    "Runs that reached a terminal status, by status and failureReason ('none' without one)",
    ["status", "reason"],
)
TRIGGER_ATTEMPTS = Counter(
    "designrun_trigger_attempts", "Attempts to start a runner, by backend", ["backend"]
)
TRIGGER_FAILURES = Counter(
    "designrun_trigger_failures", "Failed attempts to start a runner, by backend", ["backend"]
)
OPEN_STREAMS = Gauge(
    "designrun_open_streams",
    "Live event streams open on this host",
    multiprocess_mode="livesum",
)
WEBHOOK_DELIVERIES = Counter(
    "designrun_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, retry, failed: given up, refused: SSRF)",
    ["outcome"],
)

_request_metrics: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def _observe_request(route: str, method: str, status: str, seconds: float) -> None:
    # The labelled children are cached: a dict lookup instead of prometheus_client's label
    # validation on every request (the event-ingestion hot path is benchmarked).
    key = (route, method, status)
    children = _request_metrics.get(key)
    if children is None:
        children = (HTTP_REQUESTS.labels(*key), HTTP_LATENCY.labels(*key))
        _request_metrics[key] = children
    children[0].inc()
    children[1].observe(seconds)


def events_ingested(count: int) -> None:
    """Count ``count`` events accepted from a runner (a counter increment, nothing more)."""
    EVENTS_INGESTED.inc(count)


def run_finished(status: str, reason: str | None) -> None:
    """Count one run that reached a terminal status (``reason``: its failureReason or None)."""
    RUNS_FINISHED.labels(status, reason or "none").inc()


def trigger_attempt(backend: str, failed: bool) -> None:
    """Count one attempt to start a runner, and whether it failed."""
    TRIGGER_ATTEMPTS.labels(backend).inc()
    if failed:
        TRIGGER_FAILURES.labels(backend).inc()


def webhook_delivery(outcome: str) -> None:
    """Count one webhook delivery attempt: ``delivered``, ``retry``, ``failed`` or ``refused``."""
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def stream_opened() -> None:
    """A live event stream opened on this process (pair with ``stream_closed``)."""
    OPEN_STREAMS.inc()


def stream_closed() -> None:
    """A live event stream of this process closed."""
    OPEN_STREAMS.dec()


@contextmanager
def open_stream() -> Iterator[None]:
    """Count a live event stream as open for the duration of the block."""
    stream_opened()
    try:
        yield
    finally:
        stream_closed()


# --- request ids --------------------------------------------------------------------------------


def current_request_id() -> str | None:
    """The request id of the request (or background job) being handled, if any."""
    return _request_id.get()


def sane_request_id(value: str | None) -> str | None:
    """``value`` when it is an acceptable request id, else None."""
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return None


@contextmanager
def bound_request_id(value: str | None) -> Iterator[None]:
    """Log with ``value`` as the request id for the block (background work for one run)."""
    token = _request_id.set(value)
    try:
        yield
    finally:
        _request_id.reset(token)


def _begin_request() -> None:
    g.request_started = time.perf_counter()
    rid = sane_request_id(request.headers.get(REQUEST_ID_HEADER)) or uuid.uuid4().hex
    g.request_id = rid
    g.request_id_token = _request_id.set(rid)


def _end_request(response: Response) -> Response:
    rid = g.get("request_id")
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid
    started = g.get("request_started")
    if started is not None:
        rule = request.url_rule
        _observe_request(
            rule.rule if rule is not None else "unmatched",
            request.method,
            str(response.status_code),
            time.perf_counter() - started,
        )
    return response


def _forget_request_id(exc: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        try:
            _request_id.reset(token)
        except ValueError:  # reset from another context (streamed responses): just clear it
            _request_id.set(None)


def init_app(app: Flask) -> None:
    """Hook request ids and request metrics into ``app`` (before the API's own hooks)."""
    app.before_request(_begin_request)
    app.after_request(_end_request)
    app.teardown_request(_forget_request_id)
    _watch_runs()


# Runs created are counted from the ORM's flushes (every path that creates a run: create,
# retry), at commit and forgotten on rollback; runs finished from services/hooks.py's
# after-commit transition hook. The event-ingestion hot path writes with Core statements and
# never reaches these listeners.
_SEEN = "designrun.observability.created"


def _after_flush(session: Session, flush_context: Any) -> None:
    from designrun.models import Run

    created = sum(1 for obj in session.new if isinstance(obj, Run))
    if created:
        session.info[_SEEN] = session.info.get(_SEEN, 0) + created


def _after_commit(session: Session) -> None:
    created = session.info.pop(_SEEN, 0)
    if created:
        RUNS_CREATED.inc(created)


def _after_rollback(session: Session) -> None:
    session.info.pop(_SEEN, None)


def _on_finished(info: Any) -> None:
    if info.to_status in _TERMINAL and info.from_status not in _TERMINAL:
        run_finished(info.to_status, info.reason)


_TERMINAL = frozenset({"completed", "failed", "cancelled"})
_watching = False


def _watch_runs() -> None:
    global _watching
    if _watching:
        return
    _watching = True
    event.listen(Session, "after_flush", _after_flush)
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_rollback", _after_rollback)
    from designrun.services import hooks

    hooks.after_transition(_on_finished)


# --- logs ---------------------------------------------------------------------------------------

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
# gunicorn's access log: the request id is read from the response header it logs.
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
_ACCESS_FIELDS = {
    "request_id": "{x-request-id}o",
    "remote_addr": "h",
    "method": "m",
    "path": "U",
    "status": "s",
    "bytes": "B",
    "duration_ms": "M",
}


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record (``-`` outside a request).

    gunicorn's access records carry the response's headers in their arguments: their request
    id (and, for JSON lines, the request's other fields) is taken from there.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get() or "-"
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            atoms = record.args
            for field, atom in _ACCESS_FIELDS.items():
                value = atoms.get(atom)
                if value is not None and value != "-":
                    setattr(record, field, value)
        return True


def log_format_from_env() -> str:
    """``json`` or ``text`` from LOG_FORMAT (anything else is text)."""
    return "json" if (os.environ.get("LOG_FORMAT") or "").strip().lower() == "json" else "text"


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``log_format``: one JSON object per line (python-json-logger) or text."""
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            JSON_FIELDS,
            rename_fields={"levelname": "level", "name": "logger", "asctime": "time"},
        )
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: str | None = None, stream: Any = None) -> logging.Handler:
    """Send the root logger's records to stderr (or ``stream``) in LOG_FORMAT, with request ids.

    Idempotent: a second call in the same process (gunicorn master, then a worker) keeps the
    handler already installed.
    """
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_designrun", False):
            return handler
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._designrun = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter(log_format or log_format_from_env()))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    if root.level == logging.WARNING:  # the untouched default
        root.setLevel(logging.INFO)
    return handler


try:
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # pragma: no cover - gunicorn is a dependency; the runner image lacks it
    _GunicornLogger = object  # type: ignore[misc,assignment]


class GunicornLogger(_GunicornLogger):  # type: ignore[misc,valid-type]
    """gunicorn's logger with LOG_FORMAT applied to its error and access logs.

    The handlers stay gunicorn's own (so ``accesslog``/``errorlog`` paths keep working); only
    their formatter changes for JSON, and every handler gets the request-id filter.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        log_format = log_format_from_env()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(RequestIdFilter())
                if log_format == "json":
                    handler.setFormatter(formatter("json"))
