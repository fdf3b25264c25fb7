"""User run endpoints (API.md § User run endpoints), session-authenticated."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from designrun.api import downloads, serializers
from designrun.api.parsing import parse_body, parse_query
from designrun.api.schemas import (
    MAX_SEQUENCE,
    CancelRun,
    CreateRun,
    ListEventsQuery,
    ListRunsQuery,
    StreamQuery,
)
from designrun.auth.guards import require_user
from designrun.errors import InvalidRequestError
from designrun.models import RunEvent
from designrun.services import artifacts, lifecycle, runs, streams

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


@design_api.get("/runs/<uuid:run_id>/events/stream")
def stream_events(run_id: uuid.UUID) -> Response:
    """API.md Part 2 § Live tail: Server-Sent Events; the waiter (services/streams.py) feeds it."""
    after = parse_query(StreamQuery).after or 0
    last_id = request.headers.get("Last-Event-ID")
    if last_id is not None and last_id.strip():
        if not last_id.strip().isdigit() or int(last_id) > MAX_SEQUENCE:
            raise InvalidRequestError("Last-Event-ID: must be an event sequence (an integer >= 0)")
        after = int(last_id)
    stream = streams.open_stream(current_app._get_current_object(), g.account_id, run_id, after)  # type: ignore[attr-defined]
    response = Response(_sse(stream), mimetype="text/event-stream")
    response.call_on_close(stream.close)
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each line on at once
    return response


def _sse(stream: streams.Stream) -> Any:
    yield b"retry: 2000\n\n"
    for batch in stream:
        yield "".join(_sse_item(item) for item in batch).encode()


def _sse_item(item: streams.Item) -> str:
    if isinstance(item, streams.Ping):
        return ": ping\n\n"
    if isinstance(item, streams.End):
        return f"event: end\ndata: {json.dumps({'status': item.status})}\n\n"
    if isinstance(item, RunEvent):
        data = json.dumps(serializers.event(item), separators=(",", ":"))
        return f"id: {item.sequence}\nevent: event\ndata: {data}\n\n"
    data = json.dumps(serializers.run(item), separators=(",", ":"))
    return f"event: run\ndata: {data}\n\n"


@design_api.get("/runs/<uuid:run_id>/artifacts")
def list_artifacts(run_id: uuid.UUID) -> dict[str, Any]:
    artifacts = runs.list_artifacts(g.account_id, run_id)
    return {"ok": True, "artifacts": [serializers.artifact(a) for a in artifacts]}


@design_api.get("/runs/<uuid:run_id>/artifacts/<uuid:artifact_id>/content")
def download_artifact(run_id: uuid.UUID, artifact_id: uuid.UUID) -> Response:
    """The artifact's bytes (GET and HEAD): API.md § Artifacts at any size, api/downloads.py."""
    artifact = runs.get_artifact(g.account_id, run_id, artifact_id)
    return downloads.respond(artifact, artifacts.artifact_object(artifact))


@design_api.delete("/runs/<uuid:run_id>")
def delete_run(run_id: uuid.UUID) -> dict[str, Any]:
    runs.delete_run(g.account_id, run_id)
    return {"ok": True}
