"""GET /api/openapi.json: an OpenAPI 3.1 document generated from api/schemas.py.

The request models here are the ones the views validate with, so the document cannot drift
from the validation. Only the list of operations (path, method, models, status codes) is
written down here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from designrun.api import schemas as s
from designrun.api import webhook_schemas as w

openapi_api = Blueprint("openapi_api", __name__, url_prefix="/api")

_REF = "#/components/schemas/{model}"
_ERROR_TEXT = {
    400: "Invalid request (the message names the field)",
    401: "Missing or invalid credentials",
    403: "Forbidden",
    404: "Not found",
    409: "The run is finished (run_finished, runStatus says how) or still active (run_active)",
    413: "Body larger than its bound (MAX_JSON_BYTES or tighter for JSON, MAX_UPLOAD_BYTES)",
    415: "Body is not JSON",
    416: "Range not satisfiable (Content-Range: bytes */size)",
    422: "E-mail already registered",
    429: "Too many failed sign-ins (Retry-After)",
    503: "Database unavailable",
}
_COMMON = (400, 413, 415, 503)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok_status: int, ok_schema: dict[str, Any], errors: tuple[int, ...]) -> dict:
    responses: dict[str, Any] = {str(ok_status): {"description": "Success", **_json(ok_schema)}}
    for status in sorted(set(errors) | set(_COMMON)):
        responses[str(status)] = {"description": _ERROR_TEXT[status], **_json(_ref(s.ErrorOut))}
    return responses


_QUERY_TEXT = {
    "limit": (
        "Page size (runs: 1..100, default 20; events: 1..1000, default 100; webhook "
        "deliveries: 1..100, default 50)"
    ),
    "cursor": "nextCursor of the previous page (opaque)",
    "status": "Only runs in this status",
    "after": "Only events with a sequence above this one (the previous page's nextCursor)",
}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": _QUERY_TEXT[name],
            "schema": prop,
        }
        for name, prop in schema["properties"].items()
    ]


_RUN_ID = {
    "name": "runId",
    "in": "path",
    "required": True,
    "description": "The run's id (a UUID; any other text is a 404)",
    "schema": {"type": "string", "format": "uuid"},
}
_ARTIFACT_ID = {
    "name": "artifactId",
    "in": "path",
    "required": True,
    "description": "The artifact's id (a UUID)",
    "schema": {"type": "string", "format": "uuid"},
}
# One message of the event stream (its fields as text/event-stream carries them).
_SSE_MESSAGE = {
    "type": "object",
    "properties": {
        "event": {"enum": ["event", "run", "end"]},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "data": {"type": "string", "description": "Event JSON, Run JSON, or {status}"},
        "retry": {"type": "integer"},
    },
}
_WEBHOOK_ID = {
    "name": "webhookId",
    "in": "path",
    "required": True,
    "description": "The webhook endpoint's id (a UUID)",
    "schema": {"type": "string", "format": "uuid"},
}

# operationId → (summary, description). Every operation has both (tests/test_api_docs.py).
_TEXT: dict[str, tuple[str, str]] = {
    "postStatus": (
        "Report a run's status or progress",
        "The runner reports running/completed/failed/cancelled and progress (clamped into "
        "[0, 1]); a terminal status may carry eventCount. On a finished run anything but a "
        "repeat of its final status is 409 run_finished with runStatus: the runner must stop.",
    ),
    "postEvents": (
        "Append log events",
        "One event or a batch of 1 to 1000, stored atomically and in order with increasing "
        "sequence numbers; an idempotencyKey already stored returns the original eventId.",
    ),
    "postArtifact": (
        "Register or upload an artifact",
        "JSON registers an object already stored (storageKey required); multipart/form-data "
        "streams the file part into the configured storage, then registers it.",
    ),
    "refreshToken": (
        "Refresh the runner token",
        "A fresh run-scoped token for long jobs; works on finished runs too (late log lines).",
    ),
    "signUp": (
        "Sign up with e-mail and password",
        "Creates a user with a personal account and a session (cookie and token). 403 when "
        "ALLOW_SIGNUP is false, 422 when the e-mail is taken.",
    ),
    "signIn": (
        "Sign in with e-mail and password",
        "A new session (cookie and token). Wrong credentials are 401; repeated failures 429.",
    ),
    "signOut": ("Sign out", "Revokes the current session server-side."),
    "getSession": (
        "The current session",
        "The session and user, or null without a valid session.",
    ),
    "createRun": (
        "Create a run",
        "Creates a queued run and triggers its runner in the background (never waits).",
    ),
    "listRuns": (
        "List the account's runs",
        "Newest first, keyset-paginated with nextCursor, optionally filtered by status.",
    ),
    "getRun": (
        "Get a run",
        "The run with its status history (transitions, oldest first).",
    ),
    "deleteRun": (
        "Delete a run",
        "Cancels it first if it is active, then removes the run, its events, artifact rows and "
        "the stored objects under runs/<runId>/.",
    ),
    "cancelRun": (
        "Cancel a run",
        "Ends an active run as cancelled (failureReason cancelled_by_user): a queued run's "
        "trigger is withdrawn, a local runner process is stopped within 10 s, any runner gets "
        "409 on its next call. Idempotent on a cancelled run; 409 run_finished otherwise.",
    ),
    "retryRun": (
        "Retry a finished run",
        "A new run with the same prompt and config and retryOf set, triggered like any new "
        "run. 409 run_active while the run has not finished.",
    ),
    "listEvents": (
        "List a run's events",
        "Ascending by sequence after the given one; poll with after to tail the log.",
    ),
    "streamEvents": (
        "Live tail of a run's events (Server-Sent Events)",
        "text/event-stream: `retry: 2000`, the run (`event: run`), each stored event after "
        "`Last-Event-ID` (header) or `after` as `id: <sequence>` / `event: event`, each change "
        "of the run's status or progress as `event: run`, `: ping` comments at least every "
        "STREAM_PING_INTERVAL seconds (15), and `event: end` with the final status once the run "
        "is terminal and its events were sent. 503 streams_full with Retry-After when this "
        "server process holds STREAM_MAX_PER_PROCESS streams (clients fall back to polling).",
    ),
    "listArtifacts": ("List a run's artifacts", "Oldest first."),
}
_RUNNER: list[dict[str, list[str]]] = [{"runnerBearer": []}]
_USER: list[dict[str, list[str]]] = [{"sessionBearer": []}, {"sessionCookie": []}]


def _operations() -> dict[str, dict[str, Any]]:
    runner_errors = (401, 404)
    run_path = "/api/runner/runs/{runId}"
    user_run = "/api/design/runs/{runId}"
    multipart = {
        "type": "object",
        "required": ["file", "artifactType"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "artifactType": {"type": "string", "minLength": 1, "maxLength": 100},
            "storageKey": {"type": "string", "minLength": 1},
            "contentType": {"type": "string", "minLength": 1, "maxLength": 255},
            "metadata": {"type": "string", "description": "a JSON object, as a string"},
            "idempotencyKey": {"type": "string", "minLength": 1, "maxLength": 200},
        },
    }
    return {**_run_operations(runner_errors, run_path, user_run, multipart), **_ops_operations()}


def _ops_operations() -> dict[str, dict[str, Any]]:
    """Webhooks (docs/api.md § Webhooks) and the operations endpoints (docs/operations.md)."""
    plain = {"type": "object", "additionalProperties": True}
    return {
        "/api/design/webhooks": {
            "post": {
                "operationId": "createWebhook",
                "tags": ["webhooks"],
                "security": _USER,
                "summary": "Register a webhook endpoint",
                "description": (
                    "Standard Webhooks deliveries of run.completed / run.failed / run.cancelled "
                    "to an http(s) URL; private, loopback and link-local addresses are refused "
                    "unless WEBHOOK_ALLOW_PRIVATE=true. The whsec_ secret is shown only here."
                ),
                "requestBody": {"required": True, **_json(_ref(w.CreateWebhook))},
                "responses": _responses(201, _ref(w.WebhookCreatedOut), (401, 403)),
            },
            "get": {
                "operationId": "listWebhooks",
                "tags": ["webhooks"],
                "security": _USER,
                "summary": "List the account's webhook endpoints",
                "description": "Oldest first, without their secrets.",
                "responses": _responses(200, _ref(w.WebhookListOut), (401,)),
            },
        },
        "/api/design/webhooks/{webhookId}": {
            "delete": {
                "operationId": "deleteWebhook",
                "tags": ["webhooks"],
                "security": _USER,
                "summary": "Delete a webhook endpoint",
                "description": "Its pending deliveries are not sent any more.",
                "parameters": [_WEBHOOK_ID],
                "responses": _responses(200, _ref(s.OkOut), (401, 403, 404)),
            }
        },
        "/api/design/webhooks/{webhookId}/deliveries": {
            "get": {
                "operationId": "listWebhookDeliveries",
                "tags": ["webhooks"],
                "security": _USER,
                "summary": "The endpoint's delivery log",
                "description": (
                    "Newest first: state, attempts, last status code and error, next retry, "
                    "and the last attempts."
                ),
                "parameters": [_WEBHOOK_ID, *_query_parameters(w.ListDeliveriesQuery)],
                "responses": _responses(200, _ref(w.DeliveryListOut), (401, 404)),
            }
        },
        "/livez": {
            "get": {
                "operationId": "livez",
                "tags": ["operations"],
                "security": [],
                "summary": "Liveness",
                "description": "200 while the process serves requests; checks nothing else.",
                "responses": {"200": {"description": "Alive", **_json(plain)}},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["operations"],
                "security": [],
                "summary": "Readiness",
                "description": (
                    "200 when the database answers, migrations are current and the storage is "
                    "writable; else 503 with the failing checks named (code not_ready)."
                ),
                "responses": {
                    "200": {"description": "Ready", **_json(plain)},
                    "503": {"description": "Not ready", **_json(_ref(s.ErrorOut))},
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "security": [{"metricsBearer": []}, {}],
                "summary": "Prometheus metrics",
                "description": (
                    "Text exposition format, aggregated over this host's workers. Needs "
                    "the METRICS_TOKEN bearer when that is set."
                ),
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": {"description": "METRICS_TOKEN required", **_json(_ref(s.ErrorOut))},
                },
            }
        },
    }


def _run_operations(
    runner_errors: tuple[int, ...], run_path: str, user_run: str, multipart: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    return {
        f"{run_path}/status": {
            "post": {
                "operationId": "postStatus",
                "tags": ["runner"],
                "security": _RUNNER,
                "parameters": [_RUN_ID],
                "requestBody": {"required": True, **_json(_ref(s.StatusUpdate))},
                "responses": _responses(200, _ref(s.StatusOut), (*runner_errors, 409)),
            }
        },
        f"{run_path}/events": {
            "post": {
                "operationId": "postEvents",
                "tags": ["runner"],
                "security": _RUNNER,
                "parameters": [_RUN_ID],
                "requestBody": {
                    "required": True,
                    **_json({"oneOf": [_ref(s.EventIn), _ref(s.EventBatch)]}),
                },
                "responses": _responses(200, _ref(s.EventStoredOut), runner_errors),
            }
        },
        f"{run_path}/artifacts": {
            "post": {
                "operationId": "postArtifact",
                "tags": ["runner"],
                "security": _RUNNER,
                "parameters": [_RUN_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref(s.ArtifactRegistration)},
                        "multipart/form-data": {"schema": multipart},
                    },
                },
                "responses": _responses(200, _ref(s.ArtifactStoredOut), runner_errors),
            }
        },
        f"{run_path}/token": {
            "post": {
                "operationId": "refreshToken",
                "tags": ["runner"],
                "security": _RUNNER,
                "parameters": [_RUN_ID],
                "responses": _responses(200, _ref(s.TokenOut), runner_errors),
            }
        },
        "/api/auth/sign-up/email": {
            "post": {
                "operationId": "signUp",
                "tags": ["auth"],
                "security": [],
                "requestBody": {"required": True, **_json(_ref(s.SignUp))},
                "responses": _responses(200, _ref(s.AuthOut), (403, 422)),
            }
        },
        "/api/auth/sign-in/email": {
            "post": {
                "operationId": "signIn",
                "tags": ["auth"],
                "security": [],
                "requestBody": {"required": True, **_json(_ref(s.SignIn))},
                "responses": _responses(200, _ref(s.AuthOut), (401, 403, 429)),
            }
        },
        "/api/auth/sign-out": {
            "post": {
                "operationId": "signOut",
                "tags": ["auth"],
                "security": [],
                "responses": _responses(200, _ref(s.SignOutOut), (403,)),
            }
        },
        "/api/auth/get-session": {
            "get": {
                "operationId": "getSession",
                "tags": ["auth"],
                "security": [],
                "responses": _responses(
                    200, {"anyOf": [_ref(s.GetSessionOut), {"type": "null"}]}, ()
                ),
            }
        },
        "/api/design/runs": {
            "post": {
                "operationId": "createRun",
                "tags": ["design"],
                "security": _USER,
                "requestBody": {"required": True, **_json(_ref(s.CreateRun))},
                "responses": _responses(201, _ref(s.RunEnvelope), (401, 403)),
            },
            "get": {
                "operationId": "listRuns",
                "tags": ["design"],
                "security": _USER,
                "parameters": _query_parameters(s.ListRunsQuery),
                "responses": _responses(200, _ref(s.RunListOut), (401,)),
            },
        },
        user_run: {
            "get": {
                "operationId": "getRun",
                "tags": ["design"],
                "security": _USER,
                "parameters": [_RUN_ID],
                "responses": _responses(200, _ref(s.RunEnvelope), (401, 404)),
            },
            "delete": {
                "operationId": "deleteRun",
                "tags": ["design"],
                "security": _USER,
                "parameters": [_RUN_ID],
                "responses": _responses(200, _ref(s.OkOut), (401, 403, 404)),
            },
        },
        f"{user_run}/cancel": {
            "post": {
                "operationId": "cancelRun",
                "tags": ["design"],
                "security": _USER,
                "parameters": [_RUN_ID],
                "requestBody": {"required": False, **_json(_ref(s.CancelRun))},
                "responses": _responses(200, _ref(s.RunEnvelope), (401, 403, 404, 409)),
            }
        },
        f"{user_run}/retry": {
            "post": {
                "operationId": "retryRun",
                "tags": ["design"],
                "security": _USER,
                "parameters": [_RUN_ID],
                "responses": _responses(201, _ref(s.RunEnvelope), (401, 403, 404, 409)),
            }
        },
        f"{user_run}/events": {
            "get": {
                "operationId": "listEvents",
                "tags": ["design"],
                "security": _USER,
                "parameters": [_RUN_ID, *_query_parameters(s.ListEventsQuery)],
                "responses": _responses(200, _ref(s.EventListOut), (401, 404)),
            }
        },
        f"{user_run}/events/stream": {
            "get": {
                "operationId": "streamEvents",
                "tags": ["design"],
                "security": _USER,
                "parameters": [
                    _RUN_ID,
                    *_query_parameters(s.StreamQuery),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "Resume after this sequence (EventSource sends it)",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The event stream (never buffered)",
                        "content": {"text/event-stream": {"schema": _SSE_MESSAGE}},
                    },
                    **{
                        k: v
                        for k, v in _responses(200, {}, (401, 404)).items()
                        if k in {"400", "401", "404", "503"}
                    },
                },
            }
        },
        f"{user_run}/artifacts": {
            "get": {
                "operationId": "listArtifacts",
                "tags": ["design"],
                "security": _USER,
                "parameters": [_RUN_ID],
                "responses": _responses(200, _ref(s.ArtifactListOut), (401, 404)),
            }
        },
    }


def _binary(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }


def _artifact_operations() -> dict[str, dict[str, Any]]:
    """API.md § Artifacts at any size: direct uploads and ranged/conditional downloads."""
    errors = _responses(200, {}, (401, 403, 404, 413, 416))
    download_responses = {
        "200": _binary("The whole object (attachment, nosniff)"),
        "206": _binary("One byte range (Content-Range)"),
        "302": {"description": "s3 storage: a short-lived presigned GET (Location)"},
        "304": {"description": "Not modified (If-None-Match / If-Modified-Since)"},
        **{k: v for k, v in errors.items() if k in {"401", "404", "416", "503"}},
    }
    download = {
        "tags": ["design"],
        "security": _USER,
        "parameters": [_RUN_ID, _ARTIFACT_ID],
        "responses": download_responses,
    }
    return {
        "/api/runner/runs/{runId}/artifacts/uploads": {
            "post": {
                "operationId": "createUpload",
                "tags": ["runner"],
                "summary": "Get a URL to upload one file to directly",
                "description": (
                    "Answers a URL, method (PUT) and headers to send one file's bytes with "
                    "(no bearer: the URL is the credential, for that key only, until expiresAt). "
                    "s3: a presigned PUT to the bucket; local: a signed URL on this service. "
                    "Then register the artifact with the JSON form of the artifacts endpoint."
                ),
                "security": _RUNNER,
                "parameters": [_RUN_ID],
                "requestBody": {"required": True, **_json(_ref(s.DirectUploadRequest))},
                "responses": _responses(200, _ref(s.DirectUploadOut), (401, 404)),
            }
        },
        "/api/uploads/{token}": {
            "put": {
                "operationId": "putUpload",
                "tags": ["runner"],
                "summary": "Upload one file's bytes (local storage)",
                "description": (
                    "The upload URL of the local backend: the body is streamed to disk "
                    "(temporary file, fsync, rename). 403 for an expired, tampered or foreign "
                    "URL or another Content-Type; 413 past its size limit, nothing stored."
                ),
                "security": [],
                "parameters": [
                    {
                        "name": "token",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "The signed upload token from the upload URL",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": _responses(200, _ref(s.UploadReceivedOut), (403, 404, 413)),
            }
        },
        "/api/design/runs/{runId}/artifacts/{artifactId}/content": {
            "get": {
                "operationId": "downloadArtifact",
                "summary": "Download an artifact's bytes",
                "description": (
                    "ETag/Last-Modified; If-None-Match → 304; one Range → 206 (416 when "
                    "unsatisfiable; several ranges: the whole body). s3 storage answers 302 to "
                    "a presigned GET unless S3_PRESIGN_DOWNLOADS=false. 404 external_object for "
                    "a reference (a key outside the run's prefix)."
                ),
                **download,
            },
            "head": {
                "operationId": "headArtifact",
                "summary": "An artifact's size and validators",
                "description": "As GET, without the body.",
                **download,
            },
        },
    }


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
            # Operations written with their own text (the artifact ones) need no entry here.
            summary, description = _TEXT.get(operation["operationId"], ("", ""))
            operation.setdefault("summary", summary)
            operation.setdefault("description", description)
    return paths


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document (built once per process)."""
    pairs = [(m, "validation") for m in _REQUEST_MODELS] + [
        (m, "serialization") for m in _RESPONSE_MODELS
    ]
    _, defs = models_json_schema(pairs, ref_template=_REF, by_alias=True)  # type: ignore[arg-type]
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
        "paths": _with_text({**_operations(), **_artifact_operations()}),
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
