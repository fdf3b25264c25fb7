"""The artifact content response: validators, conditional requests, one byte range, redirects.

API.md § Artifacts at any size: ``ETag``/``Last-Modified``; ``If-None-Match`` (or, without it,
``If-Modified-Since``) → ``304``; one ``Range: bytes=…`` → ``206`` (unsatisfiable → ``416``);
several ranges or a malformed header are ignored (``200`` with the whole body, as RFC 9110
§ 14.2 allows); ``If-Range`` that does not match → the whole body. Always an attachment,
``nosniff`` and a sandboxing CSP: a run's HTML must never run on the app's origin, where the
session cookie lives. With s3 storage (and S3_PRESIGN_DOWNLOADS) the answer is a ``302`` to a
short-lived presigned GET, so that large files never pass through a worker.
"""

from __future__ import annotations

from flask import Response, current_app, request
from werkzeug.http import http_date, parse_date, parse_range_header
from werkzeug.wsgi import wrap_file

from designrun.errors import ApiError
from designrun.models import Artifact
from designrun.storage import get_storage
from designrun.storage.base import ObjectInfo
from designrun.storage.keys import safe_file_name

PRESIGN_SECONDS = 300
BUFFER = 1024 * 1024


def _not_modified(info: ObjectInfo) -> bool:
    if_none_match = request.if_none_match
    if if_none_match:
        return if_none_match.contains(info.etag.strip('"')) or if_none_match.star_tag
    since = parse_date(request.headers.get("If-Modified-Since"))
    return since is not None and info.last_modified.replace(microsecond=0) <= since


def _wanted_range(info: ObjectInfo) -> tuple[int, int] | None:
    """(start, stop) of the one range to send; None for the whole body; ApiError 416."""
    header = request.headers.get("Range")
    if not header:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != info.etag:
        return None  # the client's copy is another version: send it the whole new one
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return None  # malformed or several ranges: the whole body (RFC 9110 § 14.2)
    bounds = parsed.range_for_length(info.size)
    if bounds is None:
        raise ApiError(
            f"the range is outside the object's {info.size} bytes",
            status=416,
            code="range_not_satisfiable",
            headers={"Content-Range": f"bytes */{info.size}", "Accept-Ranges": "bytes"},
        )
    return bounds


def _validators(response: Response, info: ObjectInfo) -> None:
    response.headers["ETag"] = info.etag
    response.headers["Last-Modified"] = http_date(info.last_modified)
    # Private (per-user) content: caches may keep it but must ask again each time.
    response.headers["Cache-Control"] = "private, no-cache"


def respond(artifact: Artifact, info: ObjectInfo) -> Response:
    """The response to GET/HEAD of ``artifact``'s content, its object described by ``info``."""
    name = safe_file_name(artifact.storage_key.rsplit("/", 1)[-1])
    if _not_modified(info):
        response = Response(status=304)
        _validators(response, info)
        return response
    storage = get_storage()
    if current_app.config["STORAGE_BACKEND"] == "s3" and current_app.config["S3_PRESIGN_DOWNLOADS"]:
        url = storage.presign_get(artifact.storage_key, name, PRESIGN_SECONDS)
        if url is not None:
            response = Response(status=302)
            response.headers["Location"] = url
            response.headers["Cache-Control"] = "no-store"  # the URL expires within minutes
            return response
    bounds = _wanted_range(info)
    start, stop = bounds if bounds is not None else (0, info.size)
    length = stop - start
    if request.method == "HEAD":
        response = Response(status=206 if bounds else 200)
    else:
        stream = storage.open(artifact.storage_key, start, length if bounds else None)
        response = Response(
            wrap_file(request.environ, stream, buffer_size=BUFFER),
            status=206 if bounds else 200,
            direct_passthrough=True,
        )
    response.mimetype = artifact.content_type or "application/octet-stream"
    response.content_length = length
    if bounds is not None:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{info.size}"
    response.headers["Accept-Ranges"] = "bytes"
    _validators(response, info)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
