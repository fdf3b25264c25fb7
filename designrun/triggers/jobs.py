"""The job request of the ``jobs`` backend (API.md § The Daytona job request, Part 2).

``POST {DAYTONA_API_URL}/jobs``, sent by triggers/dispatcher.py. Each attempt has a wall-clock
deadline of TRIGGER_TIMEOUT seconds for the whole exchange (name lookup, connect, send, read),
shorter than the dispatcher's lease (TRIGGER_TIMEOUT + LEASE_MARGIN): a per-read socket timeout
is not enough, a server that trickles its answer would outlive the lease and another process
would send the job again. When the deadline passes, a timer shuts the socket down, and a request
whose connection was only set up after the deadline is never sent. The request also carries
``Idempotency-Key: <runId>`` so a job service can recognise a resend.

It is sent with the standard library's http.client (its socket is ours to shut down), so the
``*_PROXY`` variables are not honoured (docs/api-decisions.md).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from designrun import observability
from designrun.auth import runner_tokens
from designrun.models import Run


class TriggerError(Exception):
    """The job request failed (network error or non-2xx); the message says why, no secrets."""


def callback_url(origin: str, run_id: object) -> str:
    """``{origin}/api/runner/runs/{runId}``, without a double slash when origin ends in '/'."""
    return f"{origin.rstrip('/')}/api/runner/runs/{run_id}"


def job_body(config: Mapping[str, Any], run: Run, origin: str) -> dict[str, Any]:
    """The JSON body of the job request, with a freshly minted run-scoped token.

    ``runnerSecret`` carries the run-scoped token too, never the shared secret: an old runner
    that sends it back as its bearer keeps working, and a leaked request exposes one run only.
    """
    token, _ = runner_tokens.mint(config["RUNNER_AUTH_SECRET"], run.id, config["RUNNER_TOKEN_TTL"])
    body = {
        "runId": str(run.id),
        "accountId": str(run.account_id),
        "prompt": run.prompt,
        "config": run.config or {},
        "callbackUrl": callback_url(config.get("EXPO_PUBLIC_WORKER_ORIGIN") or origin, run.id),
        "runnerSecret": token,
        "runnerToken": token,
    }
    # The X-Request-ID of the request that created the run (an addition: docs/operations.md);
    # designrun.runner sends it back on every callback.
    request_id = observability.current_request_id()
    if request_id is not None:
        body["requestId"] = request_id
    return body


def send_job(config: Mapping[str, Any], run: Run, origin: str) -> None:
    """POST the job to ``{DAYTONA_API_URL}/jobs``; raise TriggerError unless it answers 2xx.

    The whole attempt ends within TRIGGER_TIMEOUT seconds (see the module docstring).
    """
    url = f"{config['DAYTONA_API_URL'].rstrip('/')}/jobs"
    headers = {"Content-Type": "application/json", "Idempotency-Key": str(run.id)}
    if config.get("DAYTONA_API_KEY"):
        headers["Authorization"] = f"Bearer {config['DAYTONA_API_KEY']}"
    request_id = observability.current_request_id()
    if request_id is not None:
        headers[observability.REQUEST_ID_HEADER] = request_id
    body = json.dumps(job_body(config, run, origin)).encode()
    status = post_within(url, body, headers, float(config["TRIGGER_TIMEOUT"]))
    if not 200 <= status < 300:
        raise TriggerError(f"the job service answered HTTP {status}")


def post_within(url: str, body: bytes, headers: Mapping[str, str], seconds: float) -> int:
    """POST ``body`` to ``url`` and return the status, all within ``seconds`` of wall clock.

    Raises TriggerError for a network error, a malformed URL or the deadline.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise TriggerError("DAYTONA_API_URL must be an http(s) URL")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=seconds, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=seconds)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        sock = connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked send or read at once
            except OSError:
                pass

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        connection.connect()
        if expired.is_set():
            raise TriggerError(f"the job service did not answer within {seconds:g}s (Timeout)")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers=dict(headers))
        response = connection.getresponse()
        response.read(65536)  # the answer is not used; a bounded read lets the socket close
        return int(response.status)
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise TriggerError(
                f"the job service did not answer within {seconds:g}s (Timeout)"
            ) from None
        raise TriggerError(f"the job service could not be reached: {type(exc).__name__}") from None
    finally:
        timer.cancel()
        connection.close()
