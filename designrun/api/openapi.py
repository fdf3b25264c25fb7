"""GET /api/openapi.json: an OpenAPI 3.1 document generated from api/schemas.py.

The request models here are the ones the views validate with, so the document cannot drift
from the validation. Only the list of operations (path, method, models, status codes) is
written down, in openapi_runs.py (runner, auth, design), openapi_ops.py (webhooks, health,
metrics) and openapi_artifacts.py (direct uploads, downloads), with the helpers they share
in openapi_common.py. This module assembles the document and serves it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic.json_schema import models_json_schema

from designrun.api import schemas as s
from designrun.api import webhook_schemas as w
from designrun.api.openapi_artifacts import artifact_operations
from designrun.api.openapi_common import REF
from designrun.api.openapi_ops import ops_operations
from designrun.api.openapi_runs import TEXT, run_operations

openapi_api = Blueprint("openapi_api", __name__, url_prefix="/api")

_REQUEST_MODELS = [
    s.StatusUpdate,
    s.EventIn,
    s.EventBatch,
    s.ArtifactRegistration,
    s.DirectUploadRequest,
    s.SignUp,
    s.SignIn,
    s.CreateRun,
    s.CancelRun,
    w.CreateWebhook,
]
_RESPONSE_MODELS = [
    s.ErrorOut,
    s.StatusOut,
    s.EventStoredOut,
    s.ArtifactStoredOut,
    s.TokenOut,
    s.DirectUploadOut,
    s.UploadReceivedOut,
    s.RunEnvelope,
    s.RunListOut,
    s.EventListOut,
    s.ArtifactListOut,
    s.OkOut,
    s.AuthOut,
    s.SignOutOut,
    s.GetSessionOut,
    w.WebhookCreatedOut,
    w.WebhookListOut,
    w.DeliveryListOut,
]


def _with_text(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    for operations in paths.values():
        for operation in operations.values():
            # Operations written with their own text (webhooks, operations, artifacts) need
            # no entry in TEXT.
            summary, description = TEXT.get(operation["operationId"], ("", ""))
            operation.setdefault("summary", summary)
            operation.setdefault("description", description)
    return paths


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document (built once per process)."""
    pairs = [(m, "validation") for m in _REQUEST_MODELS] + [
        (m, "serialization") for m in _RESPONSE_MODELS
    ]
    _, defs = models_json_schema(pairs, ref_template=REF, by_alias=True)  # type: ignore[arg-type]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "designrun",
            "version": "1",
            "description": (
                "The designrun HTTP contract, documented in docs/api.md of the repository. "
                "Strings anywhere in a body must not contain NUL characters (400)."
            ),
        },
        "paths": _with_text({**run_operations(), **ops_operations(), **artifact_operations()}),
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "runnerBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "run-scoped runner token or RUNNER_AUTH_SECRET",
                },
                "sessionBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "session token from sign-in",
                },
                "metricsBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "METRICS_TOKEN (only when it is set)",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "better-auth.session_token",
                },
            },
        },
    }


@openapi_api.get("/openapi.json")
def get_openapi() -> ResponseReturnValue:
    return jsonify(document())
