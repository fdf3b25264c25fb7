"""How large a JSON body each endpoint accepts, enforced before the body is read.

A JSON body is parsed whole in memory (several times its size as Python objects), so it is
bounded far below MAX_UPLOAD_BYTES, and per endpoint (docs/api-decisions.md § Body limits):

- /api/auth/* (no login needed): AUTH_BODY_BYTES, room for every body the field limits allow
  even with each character written as a ``\\uXXXX`` escape;
- event batches: MAX_JSON_BYTES (default 32 MiB), enough for 1,000 events of ~32 KiB each;
- every other JSON endpoint: SMALL_BODY_BYTES (a prompt, a config, a registration).

Each bound is also capped by MAX_JSON_BYTES and MAX_UPLOAD_BYTES. A declared Content-Length over
the bound is refused before a byte is read; a body without one (chunked) is read only up to it.
Multipart uploads are streamed to storage and keep MAX_UPLOAD_BYTES.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app, request

from designrun.errors import PayloadTooLargeError

KIB = 1024
AUTH_BODY_BYTES = 32 * KIB
SMALL_BODY_BYTES = 1024 * KIB
_READ_CHUNK = 64 * KIB

# Endpoints whose bound is MAX_JSON_BYTES itself (bodies that legitimately grow large).
_LARGE = frozenset({"runner_api.post_events"})


def json_body_limit(endpoint: str | None, config: Mapping[str, Any]) -> int:
    """The largest JSON body (bytes) that ``endpoint`` accepts under ``config``."""
    if endpoint in _LARGE:
        bound = config["MAX_JSON_BYTES"]
    elif endpoint is not None and endpoint.startswith("auth_api."):
        bound = AUTH_BODY_BYTES
    else:
        bound = SMALL_BODY_BYTES
    return int(min(bound, config["MAX_JSON_BYTES"], config["MAX_UPLOAD_BYTES"]))


def current_limit() -> int:
    """The JSON body bound of the request being served."""
    return json_body_limit(request.endpoint, current_app.config)


def too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"JSON body is larger than {limit} bytes, the limit of this endpoint"
    )


def check_declared_length() -> None:
    """413 when the request declares a JSON body longer than its endpoint's bound (unread)."""
    length = request.content_length
    if length is not None:
        limit = current_limit()
        if length > limit:
            raise too_large(limit)


def read_json_body() -> bytes:
    """The request body, read only as far as its bound allows (413 beyond it).

    With a Content-Length the bound was checked before reading. Without one (a chunked body,
    which gunicorn de-chunks and marks ``wsgi.input_terminated``) the raw input is read in
    chunks and reading stops one byte past the bound, so an endless body costs at most that.
    """
    check_declared_length()
    if request.content_length is not None:
        return request.get_data(cache=False)
    environ = request.environ
    if not environ.get("wsgi.input_terminated"):
        return b""  # Werkzeug's rule: without a length or a terminated stream, no body
    limit = current_limit()
    stream = environ["wsgi.input"]
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        chunks.append(chunk)
