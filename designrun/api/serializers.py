"""Model → camelCase JSON (API.md § User run endpoints). Timestamps get their ``Z`` here only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from designrun.models import Artifact, Run, RunEvent, RunTransition, User, UserSession
from designrun.storage.keys import is_owned


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def run(item: Run, transitions: list[RunTransition] | None = None) -> dict[str, Any]:
    """A Run; with ``transitions`` (the single-run GET) its status history too."""
    event_count = int(item.event_count or 0)  # type: ignore[attr-defined]
    expected = item.expected_event_count
    body = {
        "id": str(item.id),
        "accountId": str(item.account_id),
        "prompt": item.prompt,
        "config": item.config or {},
        "status": item.status,
        "progress": item.progress,
        "error": item.error,
        "createdAt": timestamp(item.created_at),
        "updatedAt": timestamp(item.updated_at),
        "startedAt": timestamp(item.started_at),
        "completedAt": timestamp(item.completed_at),
        "failureReason": item.failure_reason,
        "lastHeartbeatAt": timestamp(item.last_heartbeat_at),
        "retryOf": str(item.retry_of) if item.retry_of is not None else None,
        "dispatch": {
            "backend": item.dispatch_backend,
            "state": item.dispatch_state or "none",
            "attempts": item.dispatch_attempts or 0,
            "lastError": item.dispatch_last_error,
        },
        "eventCount": event_count,
        # API.md Part 2 § Log completeness: re-evaluated on every read, as late events arrive.
        "logComplete": None if expected is None else event_count >= expected,
    }
    if transitions is not None:
        body["transitions"] = [transition(t) for t in transitions]
    return body


def transition(item: RunTransition) -> dict[str, Any]:
    return {
        "from": item.from_status,
        "to": item.to_status,
        "at": timestamp(item.at),
        "by": item.by,
        "reason": item.reason,
    }


def event(item: RunEvent) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "runId": str(item.run_id),
        "sequence": item.sequence,
        "eventType": item.event_type,
        "message": item.message,
        "metadata": item.metadata_ or {},
        "createdAt": timestamp(item.created_at),
    }


def artifact(item: Artifact) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "runId": str(item.run_id),
        "artifactType": item.artifact_type,
        "storageKey": item.storage_key,
        "contentType": item.content_type,
        "sizeBytes": item.size_bytes,
        "metadata": item.metadata_ or {},
        "createdAt": timestamp(item.created_at),
        "downloadUrl": download_url(item),
    }


def download_url(item: Artifact) -> str | None:
    """The path of the artifact's content endpoint; None for a reference (a key outside the
    run's own prefix, which designrun never reads: docs/api-decisions.md)."""
    if not is_owned(item.storage_key, item.run_id):
        return None
    return f"/api/design/runs/{item.run_id}/artifacts/{item.id}/content"


def user(item: User) -> dict[str, Any]:
    """Better Auth's user shape, plus the account the user belongs to."""
    return {
        "id": str(item.id),
        "email": item.email,
        "name": item.name,
        "emailVerified": item.email_verified,
        "image": None,
        "accountId": str(item.account_id),
        "createdAt": timestamp(item.created_at),
        "updatedAt": timestamp(item.updated_at),
    }


def session(item: UserSession) -> dict[str, Any]:
    """Better Auth's session shape (the token itself is never stored, so never returned here)."""
    return {
        "id": str(item.id),
        "userId": str(item.user_id),
        "expiresAt": timestamp(item.expires_at),
        "createdAt": timestamp(item.created_at),
        "updatedAt": timestamp(item.updated_at),
        "ipAddress": item.ip_address,
        "userAgent": item.user_agent,
    }
