"""Runner API (API.md § Runner API): status, events, artifacts, token refresh.

The guard is attached to the blueprint, so a new route cannot forget it: every request carries
a run-scoped token for the run in its path, or the legacy shared secret.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError

from designrun import observability
from designrun.api import serializers
from designrun.api.multipart import FilePart, stream_form
from designrun.api.parsing import (
    check_strings,
    decode_json,
    is_json_request,
    json_object,
    parse_body,
    validate,
)
from designrun.api.schemas import (
    ArtifactFields,
    ArtifactRegistration,
    DirectUploadRequest,
    EventBatch,
    EventIn,
    StatusUpdate,
)
from designrun.auth import runner_tokens
from designrun.auth.sessions import bearer_token
from designrun.errors import UnauthorizedError, UnsupportedMediaTypeError
from designrun.services import artifacts, lifecycle, runs

log = logging.getLogger(__name__)

runner_api = Blueprint("runner_api", __name__, url_prefix="/api/runner")


@runner_api.before_request
def require_runner_token() -> None:
    """401 unless the bearer is a token for this path's run or the legacy secret."""
    run_id = (request.view_args or {}).get("run_id")
    token = bearer_token(request)
    if not isinstance(run_id, uuid.UUID) or token is None:
        raise UnauthorizedError()
    if not runner_tokens.verify(current_app.config["RUNNER_AUTH_SECRET"], token, run_id):
        raise UnauthorizedError()
    g.runner_run_id = run_id
    # The status update records its own heartbeat, and stored events theirs, in their own
    # transaction (services/event_store.py): the ingestion path pays no extra read or write.
    if request.endpoint not in _OWN_HEARTBEAT:
        lifecycle.touch_heartbeat(run_id)


_OWN_HEARTBEAT = frozenset({"runner_api.post_status", "runner_api.post_events"})
_DONE = frozenset({200, 503})  # stored with its heartbeat, or the database is down


@runner_api.after_request
def heartbeat_of_unstored_events(response: Response) -> Response:
    """An event post answered without storing (bad body, unknown run) is a callback too."""
    if response.status_code in _DONE or request.endpoint != "runner_api.post_events":
        return response
    run_id = g.get("runner_run_id")
    if run_id is not None:
        try:
            lifecycle.touch_heartbeat(run_id)
        except SQLAlchemyError:  # the database is what failed: the answer says so already
            log.warning("heartbeat of run %s not recorded", run_id)
    return response


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


@runner_api.post("/runs/<uuid:run_id>/status")
def post_status(run_id: uuid.UUID) -> dict[str, Any]:
    """API.md § POST /api/runner/runs/:runId/status."""
    update = parse_body(StatusUpdate)
    run = runs.apply_status(
        run_id, update.status, update.progress, update.error, update.event_count
    )
    return ok(runStatus=run.status, progress=run.progress)


def _new_event(event: EventIn) -> runs.NewEvent:
    return runs.NewEvent(
        event_type=event.event_type,
        message=event.message,
        metadata=event.metadata,
        idempotency_key=event.idempotency_key,
    )


@runner_api.post("/runs/<uuid:run_id>/events")
def post_events(run_id: uuid.UUID) -> dict[str, Any]:
    """API.md § POST /api/runner/runs/:runId/events: one event or a batch of 1 to 1000."""
    body = json_object()
    if "events" in body:
        batch = validate(EventBatch, body)
        ids, status = runs.append_events(run_id, [_new_event(e) for e in batch.events])
        observability.events_ingested(len(ids))
        return ok(runStatus=status, eventIds=[str(i) for i in ids])
    single = validate(EventIn, body)
    ids, status = runs.append_events(run_id, [_new_event(single)])
    observability.events_ingested(1)
    return ok(runStatus=status, eventId=str(ids[0]))


def _artifact_info(fields: ArtifactFields) -> artifacts.ArtifactInfo:
    return artifacts.ArtifactInfo(
        artifact_type=fields.artifact_type,
        content_type=fields.content_type,
        size_bytes=fields.size_bytes,
        metadata=fields.metadata,
        storage_key=fields.storage_key,
        idempotency_key=fields.idempotency_key,
    )


def _form_fields(form: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in ("artifactType", "storageKey", "contentType", "idempotencyKey"):
        value = form.get(name)
        if value is not None:
            data[name] = value
    raw_metadata = form.get("metadata")
    if raw_metadata is not None and raw_metadata.strip() != "":
        data["metadata"] = decode_json(raw_metadata, "metadata")
    return data


def _streamed_upload(run_id: uuid.UUID, form: dict[str, str], part: FilePart) -> Any:
    """Validate the fields, then stream the file part into the store (api/multipart.py)."""
    data = _form_fields(form)
    if "contentType" not in data and part.mimetype:
        # The file part's type is the default, within the same limits (255 characters).
        data["contentType"] = part.mimetype
    check_strings(data, "")
    info = _artifact_info(validate(ArtifactFields, data))
    return artifacts.upload_artifact(run_id, info, part.stream, part.filename)


@runner_api.post("/runs/<uuid:run_id>/artifacts")
def post_artifact(run_id: uuid.UUID) -> dict[str, Any]:
    """API.md § POST /api/runner/runs/:runId/artifacts: JSON registration or multipart upload."""
    if is_json_request():
        registration = parse_body(ArtifactRegistration)
        artifact, status = artifacts.register_artifact(run_id, _artifact_info(registration))
    elif request.mimetype == "multipart/form-data":
        artifact, status = stream_form(lambda form, part: _streamed_upload(run_id, form, part))
    else:
        raise UnsupportedMediaTypeError(
            "expected application/json (registration) or multipart/form-data (upload)"
        )
    return ok(
        runStatus=status,
        artifactId=str(artifact.id),
        storageKey=artifact.storage_key,
        sizeBytes=artifact.size_bytes,
    )


@runner_api.post("/runs/<uuid:run_id>/artifacts/uploads")
def create_upload(run_id: uuid.UUID) -> dict[str, Any]:
    """API.md § Artifacts at any size: a URL to PUT one file to, then register it (JSON form)."""
    body = parse_body(DirectUploadRequest)
    origin = current_app.config["EXPO_PUBLIC_WORKER_ORIGIN"] or request.host_url
    upload, status = artifacts.create_upload(
        run_id, body.file_name, body.content_type, body.size_bytes, origin
    )
    return ok(
        runStatus=status,
        uploadUrl=upload.url,
        method="PUT",
        headers=upload.headers,
        storageKey=upload.storage_key,
        expiresAt=serializers.timestamp(upload.expires_at),
    )


@runner_api.post("/runs/<uuid:run_id>/token")
def refresh_token(run_id: uuid.UUID) -> dict[str, Any]:
    """API.md § POST /api/runner/runs/:runId/token: a fresh token, on terminal runs too."""
    status = runs.run_status(run_id)
    config = current_app.config
    token, expires = runner_tokens.mint(
        config["RUNNER_AUTH_SECRET"], run_id, config["RUNNER_TOKEN_TTL"]
    )
    return ok(
        runStatus=status,
        runnerToken=token,
        expiresAt=serializers.timestamp(expires.replace(tzinfo=None)),
    )
