"""register_api(app): the blueprints (each with its guard), the error envelope, the body limit."""

from __future__ import annotations

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from designrun.api import webhooks as _webhooks  # noqa: F401  (adds its routes to design_api)
from designrun.api.auth import auth_api
from designrun.api.design import design_api
from designrun.api.errors import register_error_handlers
from designrun.api.openapi import openapi_api
from designrun.api.operations import operations_api
from designrun.api.runner import runner_api
from designrun.api.uploads import uploads_api
from designrun.auth.guards import renew_session_cookie

# Every /api route must belong to one of these; tests/api/test_audit.py checks it.
BLUEPRINTS = (runner_api, design_api, auth_api, openapi_api, uploads_api)


def _check_body_size() -> None:
    """413 on every endpoint for a declared body over MAX_UPLOAD_BYTES, read or not.

    (Werkzeug also enforces the limit while a body without Content-Length is being read.) The
    tighter JSON bounds (api/limits.py) are checked where a JSON body is parsed, before it is
    read: an endpoint that streams a body (a direct upload of a ``.json`` file) is not bound.
    """
    length = request.content_length
    if length is not None and length > current_app.config["MAX_UPLOAD_BYTES"]:
        raise RequestEntityTooLarge()


def register_api(app: Flask) -> None:
    app.before_request(_check_body_size)
    app.after_request(renew_session_cookie)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    # /livez, /readyz, /metrics: outside /api, unguarded (METRICS_TOKEN is checked by the view).
    app.register_blueprint(operations_api)
    register_error_handlers(app)
