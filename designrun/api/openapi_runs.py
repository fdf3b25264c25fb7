"""The OpenAPI operations of the runner, auth and design (runs) endpoints, with their text.

Runner: status, events, artifacts, token. Auth: sign-up, sign-in, sign-out, get-session.
Design: runs, a run, cancel, retry, events, the event stream, artifacts. Their summaries and
descriptions are in TEXT, which openapi.document() applies.
"""

from __future__ import annotations

from typing import Any

from designrun.api import schemas as s
from designrun.api.openapi_common import (
    RUN_ID,
    RUNNER,
    USER,
    json_content,
    query_parameters,
    ref,
    responses,
)

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
# operationId → (summary, description) of the operations here (the webhook, operations and
# artifact ones carry their own text). Every operation has both (tests/test_api_docs.py).
TEXT: dict[str, tuple[str, str]] = {
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


def run_operations() -> dict[str, dict[str, Any]]:
    """Path → method → operation for the runner, auth and design (runs) endpoints."""
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
    return _run_operations(runner_errors, run_path, user_run, multipart)


def _run_operations(
    runner_errors: tuple[int, ...], run_path: str, user_run: str, multipart: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    return {
        f"{run_path}/status": {
            "post": {
                "operationId": "postStatus",
                "tags": ["runner"],
                "security": RUNNER,
                "parameters": [RUN_ID],
                "requestBody": {"required": True, **json_content(ref(s.StatusUpdate))},
                "responses": responses(200, ref(s.StatusOut), (*runner_errors, 409)),
            }
        },
        f"{run_path}/events": {
            "post": {
                "operationId": "postEvents",
                "tags": ["runner"],
                "security": RUNNER,
                "parameters": [RUN_ID],
                "requestBody": {
                    "required": True,
                    **json_content({"oneOf": [ref(s.EventIn), ref(s.EventBatch)]}),
                },
                "responses": responses(200, ref(s.EventStoredOut), runner_errors),
            }
        },
        f"{run_path}/artifacts": {
            "post": {
                "operationId": "postArtifact",
                "tags": ["runner"],
                "security": RUNNER,
                "parameters": [RUN_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": ref(s.ArtifactRegistration)},
                        "multipart/form-data": {"schema": multipart},
                    },
                },
                "responses": responses(200, ref(s.ArtifactStoredOut), runner_errors),
            }
        },
        f"{run_path}/token": {
            "post": {
                "operationId": "refreshToken",
                "tags": ["runner"],
                "security": RUNNER,
                "parameters": [RUN_ID],
                "responses": responses(200, ref(s.TokenOut), runner_errors),
            }
        },
        "/api/auth/sign-up/email": {
            "post": {
                "operationId": "signUp",
                "tags": ["auth"],
                "security": [],
                "requestBody": {"required": True, **json_content(ref(s.SignUp))},
                "responses": responses(200, ref(s.AuthOut), (403, 422)),
            }
        },
        "/api/auth/sign-in/email": {
            "post": {
                "operationId": "signIn",
                "tags": ["auth"],
                "security": [],
                "requestBody": {"required": True, **json_content(ref(s.SignIn))},
                "responses": responses(200, ref(s.AuthOut), (401, 403, 429)),
            }
        },
        "/api/auth/sign-out": {
            "post": {
                "operationId": "signOut",
                "tags": ["auth"],
                "security": [],
                "responses": responses(200, ref(s.SignOutOut), (403,)),
            }
        },
        "/api/auth/get-session": {
            "get": {
                "operationId": "getSession",
                "tags": ["auth"],
                "security": [],
                "responses": responses(
                    200, {"anyOf": [ref(s.GetSessionOut), {"type": "null"}]}, ()
                ),
            }
        },
        "/api/design/runs": {
            "post": {
                "operationId": "createRun",
                "tags": ["design"],
                "security": USER,
                "requestBody": {"required": True, **json_content(ref(s.CreateRun))},
                "responses": responses(201, ref(s.RunEnvelope), (401, 403)),
            },
            "get": {
                "operationId": "listRuns",
                "tags": ["design"],
                "security": USER,
                "parameters": query_parameters(s.ListRunsQuery),
                "responses": responses(200, ref(s.RunListOut), (401,)),
            },
        },
        user_run: {
            "get": {
                "operationId": "getRun",
                "tags": ["design"],
                "security": USER,
                "parameters": [RUN_ID],
                "responses": responses(200, ref(s.RunEnvelope), (401, 404)),
            },
            "delete": {
                "operationId": "deleteRun",
                "tags": ["design"],
                "security": USER,
                "parameters": [RUN_ID],
                "responses": responses(200, ref(s.OkOut), (401, 403, 404)),
            },
        },
        f"{user_run}/cancel": {
            "post": {
                "operationId": "cancelRun",
                "tags": ["design"],
                "security": USER,
                "parameters": [RUN_ID],
                "requestBody": {"required": False, **json_content(ref(s.CancelRun))},
                "responses": responses(200, ref(s.RunEnvelope), (401, 403, 404, 409)),
            }
        },
        f"{user_run}/retry": {
            "post": {
                "operationId": "retryRun",
                "tags": ["design"],
                "security": USER,
                "parameters": [RUN_ID],
                "responses": responses(201, ref(s.RunEnvelope), (401, 403, 404, 409)),
            }
        },
        f"{user_run}/events": {
            "get": {
                "operationId": "listEvents",
                "tags": ["design"],
                "security": USER,
                "parameters": [RUN_ID, *query_parameters(s.ListEventsQuery)],
                "responses": responses(200, ref(s.EventListOut), (401, 404)),
            }
        },
        f"{user_run}/events/stream": {
            "get": {
                "operationId": "streamEvents",
                "tags": ["design"],
                "security": USER,
                "parameters": [
                    RUN_ID,
                    *query_parameters(s.StreamQuery),
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
                        for k, v in responses(200, {}, (401, 404)).items()
                        if k in {"400", "401", "404", "503"}
                    },
                },
            }
        },
        f"{user_run}/artifacts": {
            "get": {
                "operationId": "listArtifacts",
                "tags": ["design"],
                "security": USER,
                "parameters": [RUN_ID],
                "responses": responses(200, ref(s.ArtifactListOut), (401, 404)),
            }
        },
    }
