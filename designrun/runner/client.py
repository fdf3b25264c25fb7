"""The runner client (API.md § Runner API): one ``RunnerClient`` per run.

Importable by any Python runner: it needs only the standard library and ``requests``, never
Flask, SQLAlchemy or designrun's server modules.

Delivery rules, in short:

- ``event()`` only enqueues (it never touches the network). Every event gets an idempotency key
  ``"<client uuid>:<counter>"`` when it is enqueued, so a batch resent after a lost response is
  stored once (the server answers the original ids).
- One sender at a time (``_send_lock``) takes batches from the head of the queue and removes them
  only once the server has acknowledged them (runner/events.py: ``drain`` and the background
  ``flusher``). That is what keeps the order, and it is why a batch that exhausts its retries
  stays at the head: the next flush (background or explicit) resends it, and later events queue
  behind it, until ``close()``.
- Connection errors, timeouts, 429 and 5xx are retried with capped exponential backoff and jitter
  (``Retry-After`` wins when the server sends one, capped too). Other 4xx are final: ``409
  run_finished`` becomes ``RunCancelled``, anything else ``RunnerError``.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import mimetypes
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import requests

from designrun.runner import direct, events
from designrun.runner.wire import (
    _RETRYABLE_EXCEPTIONS,
    MAX_BATCH,
    MAX_EVENT_TYPE,
    MAX_MESSAGE,
    STATUSES,
    RunCancelled,
    RunnerError,
    _check_strings,
    _Event,
    _Interrupted,
    _json_object,
    _jwt_claims,
    _MultipartBody,
    _progress,
    _quote_header,
    _response_json,
    _retry_after,
    _Upload,
    run_id_from_callback,
)

log = logging.getLogger("designrun.runner")


class RunnerClient:
    """Reports one run to designrun: status, progress, events and artifacts.

    Thread-safe: ``event()`` may be called from several threads; the order of the ``event()``
    calls is the order the server stores them in. Use it as a context manager (or call
    ``close()``) so that queued events get their final flush.
    """

    def __init__(
        self,
        callback_url: str,
        token: str,
        *,
        batch_size: int = 100,
        flush_interval: float = 0.5,
        max_attempts: int = 8,
        backoff_base: float = 0.25,
        backoff_cap: float = 10.0,
        timeout: float = 30.0,
        refresh_margin: float = 300.0,
        session: requests.Session | None = None,
        direct_upload_threshold: int | None = direct.DEFAULT_THRESHOLD,
        request_id: str | None = None,
    ) -> None:
        if not isinstance(token, str) or not token.strip() or not token.strip().isprintable():
            raise ValueError("token: must be a non-empty string of printable characters")
        if batch_size < 1 or max_attempts < 1 or timeout <= 0:
            raise ValueError("batch_size and max_attempts must be >= 1, timeout > 0")
        if min(flush_interval, backoff_base, backoff_cap, refresh_margin) < 0:
            raise ValueError("flush_interval, backoff_base, backoff_cap, refresh_margin: >= 0")
        self.run_id: str = run_id_from_callback(callback_url)
        self.cancelled: bool = False
        # Sent back as X-Request-ID on every callback: the id of the request that created the
        # run, so the server's logs of every host show one id for the whole run.
        self.request_id: str | None = (
            request_id
            if request_id and len(request_id) <= 128 and request_id.isprintable()
            else None
        )
        self.run_status: str | None = None
        self._base_url = callback_url.rstrip("/")
        self._batch_size = min(batch_size, MAX_BATCH)
        self._flush_interval = flush_interval
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._timeout = timeout
        self._refresh_margin = refresh_margin
        # Files at least this large go straight to the store (None: never); runner/direct.py.
        self._direct_threshold = direct_upload_threshold
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._random = random.Random()  # noqa: S311  (jitter, not security)
        self._sleep: Callable[[float], None] = time.sleep  # a seam for tests
        # Monotonic time before which no request is sent: a 429/503's Retry-After holds for
        # every sender (the background flusher, an explicit flush, status calls), not only the
        # request that received it.
        self._not_before = 0.0

        self._token = ""
        self._token_exp: float | None = None
        self._refresh_at: float | None = None
        self._refresh_retry_at = 0.0
        self._refresh_lock = threading.Lock()
        self._set_token(token.strip(), refreshed=False)

        # _cond guards the queue and the flags below. _send_lock is held by whoever is
        # sending events; only that holder removes events from the queue (from the head),
        # in runner/events.py.
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._queue: collections.deque[_Event] = collections.deque()
        self._key_prefix = str(uuid.uuid4())
        self._counter = 0
        self._artifacts = 0
        self._flush_waiters = 0
        self._paused = False
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._single_left = 0  # events to send one by one, to find the one the server refuses

    @classmethod
    def from_job(cls, job: Mapping[str, Any], **kwargs: Any) -> RunnerClient:
        """A client for the run in an API.md job request (``callbackUrl``, ``runnerToken``)."""
        callback = job.get("callbackUrl")
        token = job.get("runnerToken") or job.get("runnerSecret")
        if not isinstance(callback, str) or not callback:
            raise ValueError("job: callbackUrl is missing")
        if not isinstance(token, str) or not token:
            raise ValueError("job: runnerToken (or runnerSecret) is missing")
        run_id = job.get("runId")
        if run_id is not None and str(run_id).lower() != run_id_from_callback(callback).lower():
            raise ValueError("job: runId does not match the run in callbackUrl")
        request_id = job.get("requestId") or os.environ.get("DESIGNRUN_REQUEST_ID")
        if isinstance(request_id, str) and "request_id" not in kwargs:
            kwargs["request_id"] = request_id
        return cls(callback, token, **kwargs)

    # -- status and progress --------------------------------------------------------------

    def set_status(
        self, status: str, *, progress: float | None = None, error: str | None = None
    ) -> dict[str, Any]:
        """Report the run's status; queued events are flushed first, so they come before it.

        A final status carries ``eventCount``, the number of events this client sent.

        Raises RunCancelled when the run is already terminal with another status.
        """
        if status not in STATUSES:
            raise ValueError(f"status: must be one of {sorted(STATUSES)}")
        body: dict[str, Any] = {"status": status}
        if progress is not None:
            body["progress"] = _progress(progress)
        if error is not None:
            if not isinstance(error, str):
                raise TypeError("error: must be a string")
            body["error"] = error
        self.flush()
        if status != "running":
            # API.md § Log completeness: how many events this client sent for the run (the
            # server shows logComplete once that many distinct events are stored).
            with self._cond:
                body["eventCount"] = self._counter
        return self._post("status", json_body=body)

    def set_progress(self, progress: float) -> dict[str, Any]:
        """Report progress (the server clamps it into [0, 1]); RunCancelled on a finished run."""
        return self._post("status", json_body={"progress": _progress(progress)})

    # -- events ---------------------------------------------------------------------------

    def event(
        self, event_type: str, message: str | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        """Queue an event; the background flusher sends it. Never waits for the network.

        Raises ValueError/TypeError at once for an event the server would refuse.
        """
        if not isinstance(event_type, str) or not 1 <= len(event_type) <= MAX_EVENT_TYPE:
            raise ValueError(f"event_type: a string of 1 to {MAX_EVENT_TYPE} characters")
        _check_strings(event_type, "event_type")
        wire: dict[str, Any] = {"eventType": event_type}
        if message is not None:
            if not isinstance(message, str) or len(message) > MAX_MESSAGE:
                raise ValueError(f"message: a string of at most {MAX_MESSAGE} characters")
            _check_strings(message, "message")
            wire["message"] = message
        if metadata is not None:
            wire["metadata"] = _json_object(metadata, "metadata")
        with self._cond:
            if self._closed:
                raise RuntimeError("RunnerClient is closed")
            self._counter += 1
            wire["idempotencyKey"] = f"{self._key_prefix}:{self._counter}"
            self._queue.append(_Event(self._counter, time.monotonic(), wire))
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(
                    target=events.flusher,
                    args=(self,),
                    name=f"designrun-runner-{self.run_id[:8]}",
                    daemon=True,
                )
                self._thread.start()
            if len(self._queue) == 1 or len(self._queue) >= self._batch_size:
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        """How many events are queued and not yet acknowledged by the server."""
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float | None = None) -> None:
        """Send every event queued so far, in order.

        Raises RunnerError when they could not all be sent (retries exhausted, a 4xx, or
        ``timeout`` seconds elapsed); the unsent events stay queued for the next flush.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if not self._queue:
                return
            upto = self._counter
            self._flush_waiters += 1  # the background flusher gives way (see _pause)
            self._cond.notify_all()
        try:
            wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._send_lock.acquire(timeout=wait):
                raise RunnerError("flush timed out", code="timeout", retryable=True)
        finally:
            with self._cond:
                self._flush_waiters -= 1
                self._cond.notify_all()
        try:
            events.drain(self, upto=upto, deadline=deadline, background=False)
            with self._cond:
                self._paused = False  # an explicit flush got through: resume the flusher
                self._cond.notify_all()
        finally:
            self._send_lock.release()

    # -- artifacts ------------------------------------------------------------------------

    def register_artifact(
        self,
        artifact_type: str,
        storage_key: str,
        *,
        content_type: str | None = None,
        size_bytes: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register an object the runner stored elsewhere; the answer carries ``artifactId``.

        Carries an idempotency key of its own, so a retry after a lost answer is not registered
        twice.
        """
        body: dict[str, Any] = {
            "artifactType": artifact_type,
            "storageKey": storage_key,
            "idempotencyKey": self._artifact_key(),
        }
        if content_type is not None:
            body["contentType"] = content_type
        if size_bytes is not None:
            body["sizeBytes"] = size_bytes
        if metadata is not None:
            body["metadata"] = _json_object(metadata, "metadata")
        return self._post("artifacts", json_body=body)

    def upload_artifact(
        self,
        path: str | os.PathLike[str],
        artifact_type: str,
        *,
        storage_key: str | None = None,
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Upload a file, streamed from disk, and register it.

        From ``direct_upload_threshold`` bytes on (and without a ``storage_key``) the file goes
        to a direct upload URL (runner/direct.py), else as multipart/form-data. Each attempt
        re-opens the file, so a retried upload sends the whole file again; its idempotency key
        makes the server keep only one artifact. Raises OSError when the file cannot be read.
        """
        path = os.fspath(path)
        threshold = self._direct_threshold
        if storage_key is None and threshold is not None and os.path.getsize(path) >= threshold:
            guessed = content_type or mimetypes.guess_type(path)[0] or "application/octet-stream"
            answer = direct.upload(
                self, path, artifact_type, content_type=guessed, metadata=metadata
            )
            if answer is not None:
                return answer
            self._direct_threshold = None  # an older server: multipart from now on
        fields = [("artifactType", artifact_type), ("idempotencyKey", self._artifact_key())]
        if storage_key is not None:
            fields.append(("storageKey", storage_key))
        if content_type is not None:
            fields.append(("contentType", content_type))
        if metadata is not None:
            fields.append(("metadata", json.dumps(_json_object(metadata, "metadata"))))
        part_type = content_type or mimetypes.guess_type(path)[0] or "application/octet-stream"
        with open(path, "rb"):
            pass  # fail early, before any request, when the file cannot be opened
        upload = _Upload(path, fields, os.path.basename(path), part_type)
        return self._post("artifacts", upload=upload)

    def _artifact_key(self) -> str:
        with self._cond:
            self._artifacts += 1
            return f"{self._key_prefix}:artifact:{self._artifacts}"

    # -- token ----------------------------------------------------------------------------

    def refresh_token(self) -> str:
        """Exchange the token for a fresh one (``POST …/token``) and use it from now on."""
        with self._refresh_lock:
            return self._refresh(None)

    def _refresh(self, deadline: float | None) -> str:
        payload = self._post("token", json_body={}, deadline=deadline, refresh=False)
        token = payload.get("runnerToken")
        if not isinstance(token, str) or not token:
            raise RunnerError("token: the answer carries no runnerToken", status=200)
        self._set_token(token, refreshed=True)
        log.info(
            "run %s: runner token refreshed, expires %s", self.run_id, payload.get("expiresAt")
        )
        return token

    def _set_token(self, token: str, *, refreshed: bool) -> None:
        claims = _jwt_claims(token)
        exp = claims.get("exp") if claims else None
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
            # A legacy shared secret (or a token without exp): it never expires, never refreshed.
            self._token, self._token_exp, self._refresh_at = token, None, None
            return
        refresh_at = exp - self._refresh_margin
        if refreshed:
            # A fresh token shorter-lived than the margin: wait for half of its life, instead
            # of refreshing again on every request.
            now = time.time()
            refresh_at = max(refresh_at, now + (exp - now) / 2)
        self._token, self._token_exp, self._refresh_at = token, float(exp), refresh_at

    def _maybe_refresh(self, deadline: float | None) -> None:
        refresh_at = self._refresh_at
        if refresh_at is None or time.time() < refresh_at:
            return
        with self._refresh_lock:
            now = time.time()
            if self._refresh_at is None or now < self._refresh_at or now < self._refresh_retry_at:
                return  # another thread refreshed meanwhile, or a failed refresh is recent
            try:
                self._refresh(deadline)
            except RunnerError as exc:
                if not exc.retryable or self._token_exp is None or time.time() >= self._token_exp:
                    raise
                self._refresh_retry_at = time.time() + max(self._backoff_cap, 1.0)
                log.warning(
                    "run %s: token refresh failed, keeping the current one: %s", self.run_id, exc
                )

    # -- HTTP -----------------------------------------------------------------------------

    def _send(
        self, url: str, json_body: dict[str, Any] | None, upload: _Upload | None, timeout: float
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if self.request_id is not None:
            headers["X-Request-ID"] = self.request_id
        if upload is None:
            return self._session.post(
                url, json=json_body, headers=headers, timeout=timeout, allow_redirects=False
            )
        boundary = f"designrun-{uuid.uuid4().hex}"
        head = b""
        for name, value in upload.fields:
            head += (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                + value.encode("utf-8")
                + b"\r\n"
            )
        head += (
            f"--{boundary}\r\n".encode()
            + b'Content-Disposition: form-data; name="file"; filename="'
            + _quote_header(upload.filename)
            + b'"\r\nContent-Type: '
            + _quote_header(upload.content_type)
            + b"\r\n\r\n"
        )
        tail = f"\r\n--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        with open(upload.path, "rb") as file:
            body = _MultipartBody(head, file, os.fstat(file.fileno()).st_size, tail)
            return self._session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            )

    def _post(
        self,
        endpoint: str,
        *,
        json_body: dict[str, Any] | None = None,
        upload: _Upload | None = None,
        deadline: float | None = None,
        background: bool = False,
        refresh: bool = True,
    ) -> dict[str, Any]:
        """POST to ``<callbackUrl>/<endpoint>`` with retries; the JSON answer, or RunnerError."""
        url = f"{self._base_url}/{endpoint}"
        attempt = 0
        while True:
            attempt += 1
            if refresh:
                self._maybe_refresh(deadline)
            wait = self._not_before - time.monotonic()
            if attempt == 1 and wait > 0:
                # Another sender was told to wait (later attempts of this call wait their own
                # backoff, which honours the Retry-After they received).
                self._pause(wait, deadline, background, endpoint)
            timeout = self._timeout
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    raise RunnerError(f"{endpoint}: timed out", code="timeout", retryable=True)
            status: int | None = None
            code: str | None = None
            retry_after: float | None = None
            try:
                response = self._send(url, json_body, upload, timeout)
            except _RETRYABLE_EXCEPTIONS as exc:
                detail = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                payload = _response_json(response)
                if payload is not None and isinstance(payload.get("runStatus"), str):
                    self.run_status = payload["runStatus"]
                if 200 <= status < 300 and payload is not None:
                    return payload
                code = payload.get("code") if payload else None
                if 300 <= status < 500 and status != 429:
                    raise self._final_error(endpoint, response, payload)
                retry_after = _retry_after(response) if status in (429, 503) else None
                if retry_after is not None:
                    held = time.monotonic() + min(self._backoff_cap, retry_after)
                    self._not_before = max(self._not_before, held)
                detail = f"HTTP {status}" + (f" {code}" if code else "")
            if attempt >= self._max_attempts:
                raise RunnerError(
                    f"{endpoint}: giving up after {attempt} attempts ({detail})",
                    status=status,
                    code=code,
                    retryable=True,
                )
            delay = self._backoff(attempt, retry_after)
            log.info(
                "run %s: %s attempt %d/%d failed (%s), retrying in %.3fs",
                self.run_id,
                endpoint,
                attempt,
                self._max_attempts,
                detail,
                delay,
            )
            self._pause(delay, deadline, background, endpoint)

    def _final_error(
        self, endpoint: str, response: requests.Response, payload: dict[str, Any] | None
    ) -> RunnerError:
        status = response.status_code
        code = payload.get("code") if payload else None
        message = (payload or {}).get("error") or response.reason
        if status == 409 and code == "run_finished":
            run_status = payload.get("runStatus") if payload else None
            self.cancelled = True
            log.info(
                "run %s: the run is %s server-side, the runner must stop", self.run_id, run_status
            )
            return RunCancelled(
                f"the run is {run_status} (409 run_finished)", run_status=run_status
            )
        return RunnerError(
            f"{endpoint}: HTTP {status} ({code}): {message}",
            status=status,
            code=code if isinstance(code, str) else None,
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self._backoff_cap, retry_after)
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** min(attempt - 1, 60))
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)  # "equal jitter"

    def _pause(self, delay: float, deadline: float | None, background: bool, endpoint: str) -> None:
        if deadline is not None and time.monotonic() + delay > deadline:
            raise RunnerError(f"{endpoint}: timed out", code="timeout", retryable=True)
        if not background:
            self._sleep(delay)
            return
        with self._cond:
            # The background flusher backs off interruptibly: close() and an explicit
            # flush() take over the sending instead of waiting for the backoff to end.
            if self._cond.wait_for(lambda: self._closing or self._flush_waiters > 0, delay):
                raise _Interrupted

    # -- lifetime -------------------------------------------------------------------------

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the background flusher after a final flush (best effort: failures are logged)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        try:
            if thread is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self.flush(timeout=remaining)
            except RunnerError as exc:
                log.error("run %s: %d events were not sent: %s", self.run_id, self.pending, exc)
        finally:
            with self._cond:
                self._closed = True
            if self._own_session:
                self._session.close()

    def __enter__(self) -> RunnerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
