"""Direct uploads for the runner client (API.md § Artifacts at any size).

A file of at least ``direct_upload_threshold`` bytes is not sent through the service: the
client asks ``POST …/artifacts/uploads`` for a URL, PUTs the file there (S3 presigned, or the
service's own signed URL with local storage), then registers it with the JSON form, whose
answer carries the size the store holds. A server that does not offer direct uploads (an older
one: ``404`` that is not ``run_not_found``) makes the client fall back to the multipart form,
and remember it for the rest of the run.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import requests

from designrun.runner.wire import _RETRYABLE_EXCEPTIONS, RunnerError, _response_json

if TYPE_CHECKING:
    from designrun.runner.client import RunnerClient

log = logging.getLogger("designrun.runner")


def _threshold_from_env() -> int | None:
    """DESIGNRUN_DIRECT_UPLOAD_THRESHOLD: bytes, or ``off``; default 8 MiB."""
    raw = os.environ.get("DESIGNRUN_DIRECT_UPLOAD_THRESHOLD", "").strip().lower()
    if raw in {"off", "none", "never"}:
        return None
    return int(raw) if raw.isdigit() else 8 * 1024 * 1024


DEFAULT_THRESHOLD = _threshold_from_env()


def upload(
    client: RunnerClient,
    path: str,
    artifact_type: str,
    *,
    content_type: str,
    metadata: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Upload ``path`` directly and register it; None when the server offers no direct uploads.

    Raises RunnerError (a final 4xx, or retries exhausted) and OSError (the file).
    """
    size = os.path.getsize(path)
    request: dict[str, Any] = {
        "fileName": os.path.basename(path) or "file",
        "contentType": content_type,
        "sizeBytes": size,
    }
    try:
        ticket = client._post("artifacts/uploads", json_body=request)
    except RunnerError as exc:
        if exc.status == 404 and exc.code != "run_not_found":
            return None
        raise
    _put(client, path, ticket)
    return client.register_artifact(
        artifact_type,
        ticket["storageKey"],
        content_type=content_type,
        size_bytes=size,
        metadata=metadata,
    )


def _put(client: RunnerClient, path: str, ticket: dict[str, Any]) -> None:
    """PUT the file to the ticket's URL, retrying network errors, 429 and 5xx."""
    headers = {str(k): str(v) for k, v in (ticket.get("headers") or {}).items()}
    url = str(ticket["uploadUrl"])
    attempt = 0
    while True:
        attempt += 1
        status: int | None = None
        try:
            with open(path, "rb") as body:
                response = requests.put(
                    url, data=body, headers=headers, timeout=client._timeout, allow_redirects=False
                )
        except _RETRYABLE_EXCEPTIONS as exc:
            detail = f"{type(exc).__name__}: {exc}"
        else:
            status = response.status_code
            if 200 <= status < 300:
                return
            payload = _response_json(response) or {}
            if status < 500 and status != 429:
                message = payload.get("error") or response.reason or f"HTTP {status}"
                raise RunnerError(f"upload: {message}", status=status, code=payload.get("code"))
            detail = f"HTTP {status}"
        if attempt >= client._max_attempts:
            raise RunnerError(
                f"upload: giving up after {attempt} attempts ({detail})",
                status=status,
                retryable=True,
            )
        delay = client._backoff(attempt, None)
        log.info("run %s: upload attempt %d failed (%s), retrying", client.run_id, attempt, detail)
        client._sleep(delay)
