"""User run endpoints (API.md § User run endpoints), session-authenticated."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, g, request
from werkzeug.wsgi import wrap_file

from designrun.api import serializers
from designrun.api.parsing import parse_body, parse_query
from designrun.api.schemas import CancelRun, CreateRun, ListEventsQuery, ListRunsQuery
from designrun.auth.guards import require_user
from designrun.errors import NotFoundError
from designrun.services import lifecycle, runs
from designrun.storage import get_storage
from designrun.storage.base import StorageKeyError
from designrun.storage.keys import safe_file_name

design_api = Blueprint("design_api", __name__, url_prefix="/api/design")


@design_api.before_request
def require_session() -> None:
    """401 without a valid session; 403 for a cookie write from a foreign Origin."""
    require_user()


@design_api.post("/runs")
def create_run() -> tuple[dict[str, Any], int]:
    body = parse_body(CreateRun)
    origin = request.host_url.rstrip("/")
    run = runs.create_run(
        g.account_id, body.prompt, body.config, origin, request_id=g.get("request_id")
    )
    return {"ok": True, "run": serializers.run(run)}, 201


@design_api.get("/runs")
def list_runs() -> dict[str, Any]:
    query = parse_query(ListRunsQuery)
    page, next_cursor = runs.list_runs(g.account_id, query.limit, query.cursor, query.status)
    return {"ok": True, "runs": [serializers.run(r) for r in page], "nextCursor": next_cursor}


@design_api.get("/runs/<uuid:run_id>")
def get_run(run_id: uuid.UUID) -> dict[str, Any]:
    run = runs.get_run(g.account_id, run_id)
    transitions = lifecycle.transitions_of(run.id)
    return {"ok": True, "run": serializers.run(run, transitions)}


@design_api.post("/runs/<uuid:run_id>/cancel")
def cancel_run(run_id: uuid.UUID) -> dict[str, Any]:
    """API.md Part 2 § Run lifecycle: cancel (the body and its reason are optional)."""
    reason = parse_body(CancelRun).reason if request.get_data(cache=True) else None
    run = runs.cancel_run(g.account_id, run_id, reason)
    return {"ok": True, "run": serializers.run(run, lifecycle.transitions_of(run.id))}


@design_api.post("/runs/<uuid:run_id>/retry")
def retry_run(run_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    """API.md Part 2 § Run lifecycle: a new run with the same prompt and config."""
    run = runs.retry_run(g.account_id, run_id, request.host_url.rstrip("/"))
    return {"ok": True, "run": serializers.run(run)}, 201


@design_api.get("/runs/<uuid:run_id>/events")
def list_events(run_id: uuid.UUID) -> dict[str, Any]:
    query = parse_query(ListEventsQuery)
    events, next_cursor = runs.list_events(g.account_id, run_id, query.after, query.limit)
    return {"ok": True, "events": [serializers.event(e) for e in events], "nextCursor": next_cursor}


@design_api.get("/runs/<uuid:run_id>/artifacts")
def list_artifacts(run_id: uuid.UUID) -> dict[str, Any]:
    artifacts = runs.list_artifacts(g.account_id, run_id)
    return {"ok": True, "artifacts": [serializers.artifact(a) for a in artifacts]}


@design_api.get("/runs/<uuid:run_id>/artifacts/<uuid:artifact_id>/content")
def download_artifact(run_id: uuid.UUID, artifact_id: uuid.UUID) -> Response:
    """The artifact's bytes, streamed from storage (an addition to API.md: docs/api-decisions.md).

    Always an attachment, sandboxed and never sniffed: a run's HTML must not execute on this
    origin, where the user's session cookie lives.
    """
    artifact = runs.get_artifact(g.account_id, run_id, artifact_id)
    storage = get_storage()
    try:
        stream = storage.open(artifact.storage_key)
    except (FileNotFoundError, StorageKeyError):
        raise NotFoundError(
            "the artifact's object is not in this server's storage", code="object_not_found"
        ) from None
    name = safe_file_name(artifact.storage_key.rsplit("/", 1)[-1])
    response = Response(
        wrap_file(request.environ, stream, buffer_size=1024 * 1024),
        mimetype=artifact.content_type or "application/octet-stream",
        direct_passthrough=True,
    )
    size = storage.size(artifact.storage_key)
    if size is not None:
        response.content_length = size
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@design_api.delete("/runs/<uuid:run_id>")
def delete_run(run_id: uuid.UUID) -> dict[str, Any]:
    runs.delete_run(g.account_id, run_id)
    return {"ok": True}
