"""The run lifecycle: the one place a run's status changes (API.md Part 2 § Run lifecycle).

Every status change — a runner's report, a user's cancel, a failure the system detects — goes
through ``change_status``, in the caller's write transaction: it checks the change against the
pure table in run_states.py, updates the run, writes one ``run_transitions`` row and runs the
hooks of services/hooks.py. A status is therefore never changed without its transition row, and
the row is never written for a change that rolled back.

Concurrency: every caller locks the run row first (``SELECT … FOR UPDATE`` on PostgreSQL, the
database write lock on SQLite) and re-reads its status under that lock, so two writers racing
to finish one run (a cancel and the runner's ``completed``, two reapers on two hosts) are
serialised: the first wins, the second sees a terminal status and gets RunFinishedError (or,
for the system, changes nothing).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from designrun.database import write_transaction
from designrun.errors import ConflictError, RunFinishedError, RunNotFoundError
from designrun.extensions import db
from designrun.models import (
    Actor,
    DispatchState,
    FailureReason,
    Run,
    RunStatus,
    RunTransition,
    Trigger,
)
from designrun.models.types import utcnow, uuid7
from designrun.services import hooks
from designrun.services.event_store import NewEvent, rows_for, store_events
from designrun.services.run_states import Transition, allowed, reason_for

log = logging.getLogger(__name__)

# lastHeartbeatAt is written at most this often per run: every runner request is a heartbeat,
# and an extra write per event batch would cost the ingestion path its speed.
HEARTBEAT_RESOLUTION = timedelta(seconds=1)
MAX_ERROR = 10_000


def change_status(
    session: Session,
    run: Run,
    change: Transition,
    *,
    by: Actor,
    reason: FailureReason | None = None,
    error: str | None = None,
) -> RunTransition | None:
    """Apply ``change`` to the locked ``run`` and record the status change, if there is one.

    Returns the transition row, or None when the status stays the same (a progress update or
    an idempotent repeat). Raises ValueError for a change the table does not allow (a bug in
    the caller: runner input is refused earlier, by run_states.transition).
    """
    now = utcnow()
    current = RunStatus(run.status)
    if not change.changed:
        return None
    if change.progress is not None:
        run.progress = change.progress
    if error is not None:
        run.error = error[:MAX_ERROR]
    if change.set_started and run.started_at is None:
        run.started_at = now
    if change.set_completed:
        run.completed_at = now
    run.updated_at = now
    if change.status == current:
        return None
    if not allowed(current, change.status, by, reason):
        raise ValueError(f"{current} → {change.status} by {by} ({reason}) is not allowed")
    run.status = change.status.value
    run.failure_reason = reason.value if reason is not None else None
    transition = RunTransition(
        id=uuid7(),
        run_id=run.id,
        from_status=current.value,
        to_status=change.status.value,
        by=by.value,
        reason=run.failure_reason,
        at=now,
    )
    session.add(transition)
    session.flush()
    hooks.transition_recorded(session, run, transition)
    return transition


def _locked(session: Session, run_id: uuid.UUID, account_id: uuid.UUID | None = None) -> Run:
    query = select(Run).where(Run.id == run_id)
    if account_id is not None:
        query = query.where(Run.account_id == account_id)
    run = session.scalar(query.with_for_update().execution_options(populate_existing=True))
    if run is None:
        raise RunNotFoundError()
    return run


def _to(status: RunStatus) -> Transition:
    """A system or user change to a terminal status: progress stays where the run left it."""
    return Transition(status=status, progress=None, set_completed=status.terminal)


# --- users --------------------------------------------------------------------------------------


def cancel_locked(session: Session, run: Run, reason: str | None) -> RunTransition | None:
    """Cancel the locked run for its user (the body of ``cancel_run`` and ``delete_run``).

    Withdraws a trigger not sent yet and records a ``run.cancelled`` event. Idempotent on a
    cancelled run (None); raises RunFinishedError for a run that finished otherwise.
    """
    status = RunStatus(run.status)
    if status == RunStatus.CANCELLED:
        return None
    if status.terminal:
        raise RunFinishedError(status.value)
    transition = change_status(
        session,
        run,
        _to(RunStatus.CANCELLED),
        by=Actor.USER,
        reason=FailureReason.CANCELLED_BY_USER,
    )
    withdrawn = session.execute(delete(Trigger).where(Trigger.run_id == run.id))
    if getattr(withdrawn, "rowcount", 0):
        run.dispatch_state = DispatchState.NONE.value
    message = "cancelled by the user" + (f": {reason}" if reason else "")
    store_events(rows_for(session.connection()), run.id, [NewEvent("run.cancelled", message)])
    return transition


def cancel_run(account_id: uuid.UUID, run_id: uuid.UUID, reason: str | None = None) -> Run:
    """Cancel the account's run (API.md Part 2, POST …/cancel); return it, now ``cancelled``.

    A queued run's trigger is withdrawn; a runner learns of the cancel from the 409 on its next
    call, and the local backend stops its process (triggers/local.py reacts to the transition).
    Cancelling a cancelled run changes nothing. Raises RunNotFoundError (also for another
    account's run), RunFinishedError (409 with runStatus) for a run that finished otherwise.
    """
    with write_transaction() as session:
        run = _locked(session, run_id, account_id)
        cancel_locked(session, run, reason)
    return run


def retry_run(account_id: uuid.UUID, run_id: uuid.UUID, origin: str | None = None) -> Run:
    """Create a new run with the finished run's prompt and config and ``retryOf`` set.

    Triggered like any new run. Raises RunNotFoundError, ConflictError ``run_active`` (409)
    when the run has not finished.
    """
    from designrun.services.runs import create_run

    original = db.session.scalar(select(Run).where(Run.id == run_id, Run.account_id == account_id))
    if original is None:
        raise RunNotFoundError()
    if not RunStatus(original.status).terminal:
        raise ConflictError(
            f"run is still {original.status}: cancel it first or wait for it to finish",
            code="run_active",
            runStatus=original.status,
        )
    prompt, config = original.prompt, dict(original.config or {})
    db.session.rollback()
    return create_run(account_id, prompt, config, origin or "", retry_of=run_id)


# --- runners and the system ----------------------------------------------------------------------


def fail_run(
    run_id: uuid.UUID,
    message: str,
    only_queued: bool = True,
    reason: FailureReason | None = None,
    *,
    still: Callable[[Run], bool] | None = None,
) -> bool:
    """Mark a run ``failed`` by the system, with an ``error`` event saying why, in one transaction.

    ``reason`` defaults to ``dispatch_failed`` with ``only_queued`` (its runner could not be
    started: the run must still be queued) and to ``runner_exited`` otherwise. ``still`` is
    checked on the locked row (a reaper's condition, re-read under the lock). Returns False,
    changing nothing, when the run is gone, finished, or no longer matches.
    """
    if reason is None:
        reason = FailureReason.DISPATCH_FAILED if only_queued else FailureReason.RUNNER_EXITED
    with write_transaction() as session:
        try:
            run = _locked(session, run_id)
        except RunNotFoundError:
            return False
        status = RunStatus(run.status)
        if status.terminal or (only_queued and status != RunStatus.QUEUED):
            return False
        if still is not None and not still(run):
            return False
        if not allowed(status, RunStatus.FAILED, Actor.SYSTEM, reason):
            return False
        change_status(
            session, run, _to(RunStatus.FAILED), by=Actor.SYSTEM, reason=reason, error=message
        )
        if reason == FailureReason.DISPATCH_FAILED:
            run.dispatch_state = DispatchState.FAILED.value
        store_events(rows_for(session.connection()), run_id, [NewEvent("error", message)])
    log.warning("run_id=%s: failed (%s): %s", run_id, reason.value, message)
    return True


def apply_runner_status(
    run_id: uuid.UUID,
    change_for: Callable[[RunStatus], Transition],
    error: str | None,
    event_count: int | None,
) -> Run:
    """Apply a runner's report (``change_for(current)`` → the state machine's answer).

    Also records the runner's heartbeat and, with a terminal status, its ``eventCount``.
    Raises what ``change_for`` raises (RunFinishedError, InvalidRequestError), RunNotFoundError.
    """
    with write_transaction() as session:
        run = _locked(session, run_id)
        change = change_for(RunStatus(run.status))
        run.last_heartbeat_at = utcnow()
        if change.changed:
            change_status(
                session,
                run,
                change,
                by=Actor.RUNNER,
                reason=reason_for(change.status, Actor.RUNNER),
                error=error,
            )
            if change.status.terminal and event_count is not None:
                run.expected_event_count = event_count
        session.flush()
    return run


# Runs whose lastHeartbeatAt this process knows to be at least this recent. Every event request
# is a callback: without this, each one would pay a read (a pool checkout, on PostgreSQL a
# pre-ping round trip too) before its write; with it, a runner's requests pay one read or write
# per HEARTBEAT_RESOLUTION and process.
_known_heartbeats: dict[uuid.UUID, datetime] = {}
_KNOWN_MAX = 10_000


def touch_heartbeat(run_id: uuid.UUID) -> None:
    """Record a runner callback on the run (lastHeartbeatAt), at most once per resolution.

    A read first, so that most event batches pay no extra write; an unknown run is ignored
    (the endpoint answers its 404).
    """
    now = utcnow()
    known = _known_heartbeats.get(run_id)
    if known is not None and now - known < HEARTBEAT_RESOLUTION:
        return
    if len(_known_heartbeats) >= _KNOWN_MAX:
        _known_heartbeats.clear()
    last = db.session.scalar(select(Run.last_heartbeat_at).where(Run.id == run_id))
    if last is not None and now - last < HEARTBEAT_RESOLUTION:
        _known_heartbeats[run_id] = last
        return
    with write_transaction() as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .where((Run.last_heartbeat_at.is_(None)) | (Run.last_heartbeat_at < now))
            .values(last_heartbeat_at=now)
        )
    _known_heartbeats[run_id] = now


def transitions_of(run_id: uuid.UUID) -> list[RunTransition]:
    """The run's status changes, oldest first."""
    query = select(RunTransition).where(RunTransition.run_id == run_id)
    return list(db.session.scalars(query.order_by(RunTransition.at, RunTransition.id)))


def stale_before(seconds: float) -> datetime:
    """The moment before which a heartbeat (or start) counts as stale."""
    return utcnow() - timedelta(seconds=seconds)


def new_run_fields(backend: str | None) -> dict[str, Any]:
    """Dispatch fields of a run created for ``backend`` (None: no runner is started)."""
    if backend is None:
        return {"dispatch_backend": None, "dispatch_state": DispatchState.NONE.value}
    return {"dispatch_backend": backend, "dispatch_state": DispatchState.PENDING.value}
