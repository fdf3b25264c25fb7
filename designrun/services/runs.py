"""Runs, their events and artifacts: every write a runner or a user makes to a run.

Each public function owns its transaction (database.write_transaction for writes) and raises
designrun.errors types. Runner-facing functions take a bare run id (the runner guard has already
checked the token against it); user-facing ones take the caller's account id and look the run
up scoped to it, so another account's run is simply not found.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import undefer

from designrun.config import runner_backend
from designrun.database import write_transaction
from designrun.errors import InvalidRequestError, NotFoundError, RunNotFoundError
from designrun.extensions import db
from designrun.models import Artifact, Run, RunEvent, RunStatus, Trigger
from designrun.models.types import utcnow, uuid7
from designrun.services import event_store, hooks, orphans
from designrun.services.event_store import NewEvent
from designrun.services.lifecycle import (
    apply_runner_status,
    cancel_locked,
    cancel_run,
    fail_run,
    new_run_fields,
    retry_run,
)
from designrun.services.run_states import transition
from designrun.storage.keys import own_prefix, run_prefix

log = logging.getLogger(__name__)

# Runs shown to users carry eventCount (a deferred column: models/runs.py).
_WITH_EVENT_COUNT = undefer(Run.event_count)  # type: ignore[attr-defined]

# The lifecycle's functions are part of this module's interface (services/lifecycle.py).
__all__ = ["cancel_run", "fail_run", "retry_run"]


# --- creation and lookup (users) ---------------------------------------------------------------


def create_run(
    account_id: uuid.UUID,
    prompt: str,
    config: dict[str, Any] | None,
    origin: str,
    retry_of: uuid.UUID | None = None,
    request_id: str | None = None,
) -> Run:
    """Create a queued run and, in the same transaction, its trigger (the outbox row).

    The trigger is sent by triggers/dispatcher.py after this commits (it is woken through
    services/hooks.py); this function never waits for the runner backend. ``origin`` is the
    request's origin, used for the ``jobs`` callbackUrl when EXPO_PUBLIC_WORKER_ORIGIN is unset
    (never for the local runner, which calls back to the service's own address).
    ``request_id`` (the request's X-Request-ID) is kept on the trigger and handed to the runner,
    so its callbacks can be followed in the logs.
    """
    backend = runner_backend(current_app.config)
    with write_transaction() as session:
        now = utcnow()
        run = Run(
            id=uuid7(),
            account_id=account_id,
            prompt=prompt,
            config=config or {},
            status=RunStatus.QUEUED.value,
            progress=0.0,
            created_at=now,
            updated_at=now,
            retry_of=retry_of,
            **new_run_fields(backend),
        )
        session.add(run)
        if backend is not None:
            session.add(
                Trigger(
                    run_id=run.id,
                    backend=backend,
                    origin=origin,
                    next_attempt_at=now,
                    request_id=request_id,
                )
            )
    if backend is not None:
        hooks.work_committed(current_app._get_current_object())  # type: ignore[attr-defined]
    return run


def get_run(account_id: uuid.UUID, run_id: uuid.UUID) -> Run:
    """The account's run; raises RunNotFoundError for a missing or foreign run."""
    run = db.session.scalar(
        select(Run).where(Run.id == run_id, Run.account_id == account_id).options(_WITH_EVENT_COUNT)
    )
    if run is None:
        raise RunNotFoundError()
    return run


def _encode_cursor(run: Run) -> str:
    raw = f"{run.created_at.isoformat()}|{run.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, _, run_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(run_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequestError("cursor: malformed cursor") from None


def list_runs(
    account_id: uuid.UUID, limit: int, cursor: str | None, status: str | None
) -> tuple[list[Run], str | None]:
    """A page of the account's runs, newest first, and the cursor of the next page (or None).

    Keyset pagination on (created_at, id) over the matching index: the cost of a page does not
    depend on how many runs exist. Raises InvalidRequestError for a malformed cursor.
    """
    query = (
        select(Run).where(Run.account_id == account_id).options(undefer(Run.event_count))  # type: ignore[attr-defined]
    )
    if status is not None:
        query = query.where(Run.status == status)
    if cursor is not None:
        created, run_id = _decode_cursor(cursor)
        query = query.where(tuple_(Run.created_at, Run.id) < tuple_(created, run_id))
    query = query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)
    runs = list(db.session.scalars(query))
    if len(runs) > limit:
        runs = runs[:limit]
        return runs, _encode_cursor(runs[-1])
    return runs, None


def list_events(
    account_id: uuid.UUID, run_id: uuid.UUID, after: int | None, limit: int
) -> tuple[list[RunEvent], int | None]:
    """Events of the account's run in ascending sequence after ``after``; next cursor if full."""
    get_run(account_id, run_id)
    query = select(RunEvent).where(RunEvent.run_id == run_id)
    if after is not None:
        query = query.where(RunEvent.sequence > after)
    events = list(db.session.scalars(query.order_by(RunEvent.sequence).limit(limit)))
    next_cursor = events[-1].sequence if len(events) == limit else None
    return events, next_cursor


def list_artifacts(account_id: uuid.UUID, run_id: uuid.UUID) -> list[Artifact]:
    """Artifacts of the account's run, oldest first."""
    get_run(account_id, run_id)
    query = (
        select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.created_at, Artifact.id)
    )
    return list(db.session.scalars(query))


def get_artifact(account_id: uuid.UUID, run_id: uuid.UUID, artifact_id: uuid.UUID) -> Artifact:
    """One artifact of the account's run; raises RunNotFoundError / NotFoundError."""
    get_run(account_id, run_id)
    artifact = db.session.scalar(
        select(Artifact).where(Artifact.id == artifact_id, Artifact.run_id == run_id)
    )
    if artifact is None:
        raise NotFoundError("artifact not found", code="artifact_not_found")
    return artifact


def delete_run(account_id: uuid.UUID, run_id: uuid.UUID) -> None:
    """Delete the account's run, every row referring to it and the objects under its prefix.

    A run that has not finished is cancelled first, through the same cancel as POST …/cancel
    (so a runner polling it learns it must stop, whichever it sees first: 409 or 404, and a
    local runner process is stopped). Objects are deleted after the rows commit: a failure
    there leaves orphaned objects (logged), never a run whose files are gone. Keys outside the
    run's prefix (runs/<runId>/, in whatever letter case its artifacts spelt the id) are kept.
    The deletions are queued in the same transaction (services/orphans.py): one that fails now
    (the store is down) is retried by the orphan sweep until it succeeds.
    """
    prefixes = {run_prefix(run_id)}
    with write_transaction() as session:
        run = session.scalar(
            select(Run).where(Run.id == run_id, Run.account_id == account_id).with_for_update()
        )
        if run is None:
            raise RunNotFoundError()
        if not RunStatus(run.status).terminal:
            cancel_locked(session, run, "the run was deleted")
            session.flush()
        for key in session.scalars(select(Artifact.storage_key).where(Artifact.run_id == run_id)):
            prefix = own_prefix(key, run_id)
            if prefix is not None:
                prefixes.add(prefix)
        session.execute(delete(RunEvent).where(RunEvent.run_id == run_id))
        session.execute(delete(Artifact).where(Artifact.run_id == run_id))
        session.execute(delete(Trigger).where(Trigger.run_id == run_id))
        session.execute(delete(Run).where(Run.id == run_id))
        pending = orphans.queue_deletions(session, prefixes)
    orphans.delete_now(pending)


# --- runner reports ------------------------------------------------------------------------------


def apply_status(
    run_id: uuid.UUID,
    status: str | None,
    progress: float | None,
    error: str | None,
    event_count: int | None = None,
) -> Run:
    """Apply a runner's status/progress report to a run (API.md state machine).

    ``event_count`` is the runner's count of the events it sent, kept with a terminal status
    (API.md Part 2 § Log completeness). Raises RunNotFoundError, InvalidRequestError, or
    RunFinishedError (409, carries the current status) when the run is terminal and the update
    is not a repeat of its final status.
    """
    new = RunStatus(status) if status else None
    return apply_runner_status(
        run_id, lambda current: transition(current, new, progress), error, event_count
    )


def run_status(run_id: uuid.UUID) -> str:
    """The run's current status; raises RunNotFoundError."""
    status = db.session.scalar(select(Run.status).where(Run.id == run_id))
    if status is None:
        raise RunNotFoundError()
    return status


def append_events(run_id: uuid.UUID, events: Sequence[NewEvent]) -> tuple[list[uuid.UUID], str]:
    """Store events atomically and in order; return their ids and the run's status.

    An event whose idempotency key is already stored for the run (or earlier in the same batch)
    is not stored again: its original id is returned. Sequences continue the run's log, strictly
    increasing; the run row is locked first (FOR UPDATE on PostgreSQL, the database write lock
    on SQLite), so concurrent writers of one run are serialised and never share a number.
    Accepted in any run state. Raises RunNotFoundError.
    """
    return event_store.append(run_id, events)
