"""One JSON error envelope for every response under /api (API.md § Conventions).

Registered on the app, not on blueprints: a blueprint never sees its own routing 404s/405s.
"""

from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, jsonify, request
from gunicorn.http.errors import NoMoreData, ParseException
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import Map, Rule

from designrun.errors import (
    ApiError,
    DatabaseUnavailableError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    StorageUnavailableError,
)
from designrun.extensions import db
from designrun.storage.base import ObjectTooLarge, StorageUnavailable

log = logging.getLogger(__name__)

_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}
_MESSAGES = {
    404: "no such endpoint",
    405: "method not allowed on this endpoint",
    413: "request body is larger than MAX_UPLOAD_BYTES",
}


def render(error: ApiError) -> Response:
    body = error.body()
    if request.path.startswith("/api/auth/"):
        body.setdefault("message", body["error"])  # Better Auth clients read ``message``
    response = jsonify(body)
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


_SHADOW = "designrun.shadow_url_map"
_ID_SHOWN = 64  # characters of a malformed id echoed back


def _shadow_map(app: Flask) -> Map:
    """The app's routes with every ``uuid`` converter loosened to any path segment."""
    shadow: Map | None = app.extensions.get(_SHADOW)
    if shadow is None:
        shadow = Map(
            [
                Rule(rule.rule.replace("<uuid:", "<"), endpoint=rule.endpoint)
                for rule in app.url_map.iter_rules()
                if "<uuid:" in rule.rule
            ]
        )
        app.extensions[_SHADOW] = shadow
    return shadow


def malformed_id(app: Flask) -> NotFoundError | None:
    """For a routing 404 whose path fits a known route but for an id that is not a UUID: a
    404 naming that id (``runId: 'nope' is not a valid id``), else None.

    API.md: a malformed id is a 404, never a 500; saying which one spares the caller a guess.
    """
    try:
        _, values = _shadow_map(app).bind("").match(request.path)
    except HTTPException:  # NotFound, and the shadow map's own redirects
        return None
    for name, value in values.items():
        try:
            uuid.UUID(str(value))
        except ValueError:
            head, *rest = name.split("_")
            wire = head + "".join(part.title() for part in rest)  # run_id -> runId
            shown = str(value)[:_ID_SHOWN] + ("…" if len(str(value)) > _ID_SHOWN else "")
            code = f"{name.removesuffix('_id')}_not_found" if name.endswith("_id") else None
            return NotFoundError(f"{wire}: '{shown}' is not a valid id (a UUID)", code=code)
    return None


def _rollback() -> None:
    try:
        db.session.rollback()
    except Exception:  # the connection may be the very thing that failed
        log.debug("rollback after error failed", exc_info=True)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        _rollback()
        return render(error)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException) -> Response | HTTPException:
        if not request.path.startswith("/api") and error.code != 413:
            return error
        status = error.code or 500
        malformed = malformed_id(app) if status == 404 and request.url_rule is None else None
        if malformed is not None:
            return render(malformed)
        message = _MESSAGES.get(status) or (error.description or error.name)
        api_error = ApiError(message, status=status, code=_CODES.get(status, "http_error"))
        response = render(api_error)
        for name, value in error.get_headers():
            if name.lower() not in {"content-type", "content-length"}:
                response.headers[name] = value
        return response

    @app.errorhandler(ParseException)
    @app.errorhandler(NoMoreData)
    def handle_malformed_body(error: Exception) -> Response:
        # gunicorn parses a chunked body as the view reads it: a bad chunk size, a missing
        # terminator or a body that ends early surfaces here, a client's mistake (gunicorn
        # closes the connection afterwards: where the next request would start is unknown).
        _rollback()
        name = type(error).__name__
        return render(InvalidRequestError(f"body: malformed or incomplete chunked body ({name})"))

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeoutError)
    def handle_database_down(error: Exception) -> Response:
        _rollback()
        log.warning("database unavailable: %s", type(error).__name__)
        return render(DatabaseUnavailableError("the database is unavailable; try again shortly"))

    @app.errorhandler(StorageUnavailable)
    def handle_storage_down(error: StorageUnavailable) -> Response:
        _rollback()
        log.warning("storage unavailable: %s", error)
        return render(
            StorageUnavailableError(f"the object storage is unavailable ({error}); try again")
        )

    @app.errorhandler(ObjectTooLarge)
    def handle_object_too_large(error: ObjectTooLarge) -> Response:
        _rollback()
        return render(PayloadTooLargeError(f"the upload is too large ({error}); nothing stored"))

    @app.errorhandler(InternalServerError)
    def handle_internal_error(error: InternalServerError) -> Response:
        # Flask logged the original exception already; never echo it to the client.
        _rollback()
        return render(ApiError("internal server error", status=500, code="internal_error"))
