"""Inline previews of a run's artifacts: images on its page, its HTML site in a sandboxed frame.

``GET /preview/<token>/<path>`` serves one artifact of one run inline. The token is a signed,
expiring capability for that run (like a presigned URL): a sandboxed frame has an opaque origin,
so the browser sends it no session cookie, yet the site's relative ``styles.css`` and images must
load. They resolve under the same token to the run's other artifacts, matched by the path the
runner gave them (``metadata.path``, else the key's file name); nothing else is reachable.

Every answer carries ``Content-Security-Policy: sandbox allow-scripts`` (also when opened
directly, not framed): the document gets an opaque origin, so its scripts can never read the
app's cookies, storage or pages, and its requests carry no session (and ``Origin: null``, which
the cookie-write check refuses). ``nosniff``, no referrer (the token stays out of logs
elsewhere), no caching by shared caches.
"""

from __future__ import annotations

import uuid

from flask import Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wsgi import wrap_file

from designrun.errors import NotFoundError
from designrun.services import previews
from designrun.storage import get_storage
from designrun.storage.base import StorageKeyError
from designrun.web import web

TOKEN_MAX_AGE = 12 * 3600  # a run page left open for a working day keeps its previews
_SALT = "designrun.preview"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def preview_token(run_id: uuid.UUID) -> str:
    """A capability for the inline previews of ``run_id`` (valid TOKEN_MAX_AGE seconds)."""
    return _serializer().dumps(str(run_id))


def _csp() -> str:
    own = request.host_url.rstrip("/")
    allow = f"'self' {own} data: blob:"
    return (
        f"sandbox allow-scripts; default-src {allow}; style-src {allow} 'unsafe-inline'; "
        f"script-src {allow} 'unsafe-inline'; img-src {allow}; font-src {allow}; "
        "connect-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
    )


@web.get("/preview/<token>/<path:path>")
def preview(token: str, path: str) -> Response:
    try:
        run_id = uuid.UUID(_serializer().loads(token, max_age=TOKEN_MAX_AGE))
    except (BadSignature, ValueError):
        raise NotFoundError("no such preview") from None
    found = previews.find_artifact(run_id, path)
    storage = get_storage()
    try:
        stream = storage.open(found.storage_key)
    except (FileNotFoundError, StorageKeyError):
        raise NotFoundError("no such preview") from None
    response = Response(
        wrap_file(request.environ, stream, buffer_size=256 * 1024),
        mimetype=found.content_type or "application/octet-stream",
        direct_passthrough=True,
    )
    size = storage.size(found.storage_key)
    if size is not None:
        response.content_length = size
    response.headers["Content-Security-Policy"] = _csp()
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, max-age=300"
    return response
