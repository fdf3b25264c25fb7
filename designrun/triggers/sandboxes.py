"""The ``daytona`` runner backend: each run executes ``designrun-runner`` in its own sandbox.

Launch (``launch``, called by the dispatcher from its pool, under the trigger's lease):
1. a ``daytona_sandboxes`` row is written for the run (state ``launching``);
2. the run's sandbox is looked up by label (``designrun.run_id``), so an attempt that follows a
   crash finds the sandbox the previous one created instead of creating a second; otherwise it
   is created from DAYTONA_SNAPSHOT (or DAYTONA_IMAGE) with the backstops and the allow-list;
3. the job (with its run-scoped token) is uploaded as a file readable by the sandbox user only
   (never a label, an environment variable or a command-line argument), and
   ``designrun-runner --job FILE`` is started asynchronously in a session named after the run;
4. the sandbox, session and command ids are stored (state ``running``). Any Daytona error
   raises TriggerError: the dispatcher retries with backoff, then fails the run.

Watch and clean (``watch_once``, a sweep): each due row is leased like a trigger and then
- ``running``: a command that exited while the run is not finished fails the run
  (``runner_exited``) with the tail of its logs, read on the pass *after* the exit code was
  seen (Daytona records the code before the logs are flushed); a sandbox that disappeared,
  stopped or errored fails the run with what Daytona says; a finished run moves on to
- ``finished``: the sandbox is deleted once DAYTONA_KEEP_SECONDS have passed (at once for a
  cancelled or deleted run), then the row is ``deleted`` (or removed, when its run is gone).
Daytona errors never fail a run here: the row is retried with backoff.

triggers/sandbox_orphans.py (a sweep, run at start-up and every DAYTONA_CLEAN_INTERVAL) deletes
sandboxes labelled by this installation for runs that are finished or unknown and that no row
is looking after. Every Daytona call happens on a background thread, never a request's.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.orm import object_session

from designrun import leases
from designrun.database import write_transaction
from designrun.extensions import db
from designrun.models import (
    DaytonaSandbox,
    FailureReason,
    Run,
    RunStatus,
    RunTransition,
    SandboxState,
    Trigger,
)
from designrun.models.types import utcnow
from designrun.services import hooks
from designrun.triggers.daytona_sdk import DaytonaClient, SandboxError, client_for
from designrun.triggers.jobs import TriggerError, job_body
from designrun.triggers.sandbox_settings import (
    BACKEND,
    run_labels,
    runner_argv,
    sandbox_spec,
    session_name,
)

log = logging.getLogger(__name__)

LEASE_SECONDS = 120.0  # a watchdog pass over one row: a few Daytona calls of at most 30 s each
LOG_SETTLE_SECONDS = 2.0  # between seeing the exit code and reading the logs for the tail
MAX_BACKOFF_SECONDS = 300.0
TAIL_LINES = 40
BATCH = 20


# --- launch (the dispatcher's pool) --------------------------------------------------------------


def launch(app: Flask, run: Run, origin: str) -> None:
    """Start ``run``'s runner in its own Daytona sandbox; raise TriggerError to be retried.

    Safe to repeat after a crash at any point: the sandbox is found by its label, the session
    by its name, and a command already started in it is not started again.
    """
    config = app.config
    row = _ensure_row(run.id)
    if row.state != SandboxState.LAUNCHING.value:
        return  # a previous attempt got as far as starting the runner, or the run is over
    job = job_body(config, run, origin)
    try:
        client = client_for(config)
        sandbox_id = _sandbox_for(client, config, run.id, row.sandbox_id, job["callbackUrl"])
        _update_launching(run.id, sandbox_id=sandbox_id)
        job_path = f"{client.work_dir(sandbox_id).rstrip('/')}/.designrun-job.json"
        client.upload_private(sandbox_id, job_path, json.dumps(job).encode())
        session_id = session_name(run.id)
        command_id = client.start_command(sandbox_id, session_id, runner_argv(config, job_path))
    except SandboxError as exc:
        raise TriggerError(f"Daytona: {exc}") from None
    _mark_running(app, run.id, session_id, command_id)
    log.info("run_id=%s: runner started in Daytona sandbox %s", run.id, sandbox_id)


def _sandbox_for(
    client: DaytonaClient,
    config: Mapping[str, Any],
    run_id: uuid.UUID,
    known_id: str | None,
    callback_url: str,
) -> str:
    """The id of the run's started sandbox: the one we know, else found by label, else new."""
    candidates = [] if known_id is None else [client.get(known_id)]
    if known_id is None:
        candidates = list(client.find(run_labels(config, run_id)))
    usable = [s for s in candidates if s is not None and not s.gone]
    for broken in [s for s in usable if s.failed]:
        client.delete(broken.id)  # errored: a fresh one is more likely to work
    usable = [s for s in usable if not s.failed]
    for extra in usable[1:]:  # two creations raced (a lease expired mid-create): keep one
        client.delete(extra.id)
    timeout = float(config["DAYTONA_CREATE_TIMEOUT"])
    if usable:
        return client.ensure_started(usable[0].id, timeout).id
    return client.create(sandbox_spec(config, run_id, callback_url), timeout).id


def _ensure_row(run_id: uuid.UUID) -> DaytonaSandbox:
    """The run's sandbox row (created ``launching`` if missing), detached."""
    with write_transaction() as session:
        row = session.get(DaytonaSandbox, run_id)
        now = utcnow()
        if row is None:
            row = DaytonaSandbox(
                run_id=run_id,
                state=SandboxState.LAUNCHING.value,
                next_check_at=now,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
        else:
            row.updated_at = now  # a live launch: the watchdog leaves fresh rows alone
        session.flush()
        session.expunge(row)
    return row


def _update_launching(run_id: uuid.UUID, **values: Any) -> None:
    with write_transaction() as session:
        session.execute(
            update(DaytonaSandbox)
            .where(
                DaytonaSandbox.run_id == run_id,
                DaytonaSandbox.state == SandboxState.LAUNCHING.value,
            )
            .values(updated_at=utcnow(), **values)
        )


def _mark_running(app: Flask, run_id: uuid.UUID, session_id: str, command_id: str) -> None:
    """Record the started command; a run that ended meanwhile gets its sandbox deleted."""
    with write_transaction() as session:
        row = session.get(DaytonaSandbox, run_id, with_for_update=True)
        if row is None:
            return
        status = session.scalar(select(Run.status).where(Run.id == run_id))
        now = utcnow()
        row.session_id, row.command_id, row.updated_at = session_id, command_id, now
        if status is None or RunStatus(status).terminal:
            row.state = SandboxState.FINISHED.value
            row.delete_after = now
            row.next_check_at = now
        else:
            row.state = SandboxState.RUNNING.value
            row.next_check_at = now + timedelta(seconds=app.config["DAYTONA_WATCH_INTERVAL"])


def abandon(run_id: uuid.UUID) -> None:
    """The launch was given up (attempts spent): delete whatever sandbox it left, soon."""
    with write_transaction() as session:
        now = utcnow()
        session.execute(
            update(DaytonaSandbox)
            .where(
                DaytonaSandbox.run_id == run_id,
                DaytonaSandbox.state == SandboxState.LAUNCHING.value,
            )
            .values(state=SandboxState.FINISHED.value, delete_after=now, next_check_at=now)
        )


@hooks.on_transition
def _on_transition(run: Run, transition: RunTransition) -> None:
    """A run of this backend finished (cancel, delete, its runner's report, a reaper): make its
    sandbox row due now, in the same transaction, so the next watchdog pass (every 2 s) deletes
    the sandbox instead of waiting for the row's next regular look."""
    if run.dispatch_backend != BACKEND or not RunStatus(transition.to_status).terminal:
        return
    session = object_session(run)
    if session is None:
        return
    session.execute(
        update(DaytonaSandbox)
        .where(
            DaytonaSandbox.run_id == run.id,
            DaytonaSandbox.state != SandboxState.DELETED.value,
        )
        .values(next_check_at=utcnow())
    )


# --- watch and clean (a sweep) -------------------------------------------------------------------


def watch_once(app: Flask) -> int:
    """Lease every due sandbox row and look after it (see the module docstring); return count."""
    if not app.config.get("DAYTONA_API_KEY"):
        return 0
    handled = 0
    with app.app_context():
        try:
            now = utcnow()
            due = db.session.scalars(
                select(DaytonaSandbox.run_id)
                .where(
                    DaytonaSandbox.next_check_at <= now,
                    DaytonaSandbox.state != SandboxState.DELETED.value,
                    leases.free(DaytonaSandbox, now),
                )
                .order_by(DaytonaSandbox.next_check_at)
                .limit(BATCH)
            ).all()
            db.session.rollback()
            for run_id in due:
                held = utcnow() + timedelta(seconds=LEASE_SECONDS)
                if not _claim(run_id, utcnow(), held):
                    continue  # another process took it
                handled += 1
                try:
                    _check(app, run_id, held)
                except SandboxError as exc:
                    _retry_later(app, run_id, held, str(exc))
                except Exception:
                    log.exception(
                        "run_id=%s: sandbox watchdog failed; the lease will expire", run_id
                    )
                finally:
                    db.session.remove()
        finally:
            db.session.remove()
    return handled


def _claim(run_id: uuid.UUID, now: datetime, lease: datetime) -> bool:
    with write_transaction() as session:
        return leases.take(
            session, DaytonaSandbox, DaytonaSandbox.run_id == run_id, now=now, lease=lease
        )


def _release(run_id: uuid.UUID, held: datetime, **values: Any) -> bool:
    """Release our lease ``held`` and set ``values``; False when the lease is not ours any more.

    The lease timestamp is the fencing token (as in the dispatcher): a pass that outlived its
    lease finds another value there and writes nothing.
    """
    with write_transaction() as session:
        result: Any = session.execute(
            update(DaytonaSandbox)
            .where(DaytonaSandbox.run_id == run_id, DaytonaSandbox.claimed_until == held)
            .values(claimed_until=None, updated_at=utcnow(), **values)
        )
    return bool(result.rowcount == 1)


def _still_ours(run_id: uuid.UUID, held: datetime) -> bool:
    value = db.session.scalar(
        select(DaytonaSandbox.claimed_until).where(DaytonaSandbox.run_id == run_id)
    )
    db.session.rollback()
    return value == held


def _retry_later(app: Flask, run_id: uuid.UUID, held: datetime, error: str) -> None:
    row = db.session.get(DaytonaSandbox, run_id)
    attempts = (row.attempts if row is not None else 0) + 1
    db.session.rollback()
    delay = min(
        float(app.config["DAYTONA_WATCH_INTERVAL"]) * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS
    )
    log.warning("run_id=%s: Daytona call failed (%s); next look in %.0fs", run_id, error, delay)
    _release(
        run_id,
        held,
        attempts=attempts,
        last_error=error[:2000],
        next_check_at=utcnow() + timedelta(seconds=delay),
    )


def _check(app: Flask, run_id: uuid.UUID, held: datetime) -> None:
    config = app.config
    row = db.session.get(DaytonaSandbox, run_id)
    run = db.session.get(Run, run_id)
    db.session.rollback()
    if row is None:
        return
    now = utcnow()
    interval = timedelta(seconds=config["DAYTONA_WATCH_INTERVAL"])
    status = None if run is None else RunStatus(run.status)
    if row.state == SandboxState.LAUNCHING.value:
        # The dispatcher owns a launching row while the run may still start or an attempt is in
        # flight (it holds the trigger's lease); one left behind is cleaned up.
        if (status is not None and not status.terminal) or _launch_in_flight(run_id, now):
            _release(run_id, held, next_check_at=now + interval)
            return
        row.delete_after = now
    elif row.state == SandboxState.RUNNING.value:
        if status is None or status.terminal:
            keep = 0 if status in (None, RunStatus.CANCELLED) else config["DAYTONA_KEEP_SECONDS"]
            row.delete_after = now + timedelta(seconds=keep)
            if not _finish(run_id, held, row.delete_after):
                return
        else:
            _watch_running(app, row, held)
            return
    if row.delete_after is not None and row.delete_after > now:
        _release(run_id, held, next_check_at=row.delete_after)
        return
    _delete_sandbox(app, row, held, run_gone=run is None)


def _launch_in_flight(run_id: uuid.UUID, now: datetime) -> bool:
    claimed = db.session.scalar(select(Trigger.claimed_until).where(Trigger.run_id == run_id))
    db.session.rollback()
    return claimed is not None and claimed > now


def _finish(run_id: uuid.UUID, held: datetime, delete_after: datetime) -> bool:
    with write_transaction() as session:
        result: Any = session.execute(
            update(DaytonaSandbox)
            .where(DaytonaSandbox.run_id == run_id, DaytonaSandbox.claimed_until == held)
            .values(state=SandboxState.FINISHED.value, delete_after=delete_after)
        )
    return bool(result.rowcount == 1)


def _watch_running(app: Flask, row: DaytonaSandbox, held: datetime) -> None:
    """Poll an active run's sandbox and command; fail the run if its runner is gone."""
    client = client_for(app.config)
    now = utcnow()
    interval = timedelta(seconds=app.config["DAYTONA_WATCH_INTERVAL"])
    if row.sandbox_id is None or row.session_id is None or row.command_id is None:
        raise SandboxError("the sandbox row has no command recorded")  # never written so
    watched = client.watch(row.sandbox_id, row.session_id, row.command_id)
    sandbox = watched.sandbox
    problem = None
    if sandbox is None or sandbox.gone:
        problem = "the Daytona sandbox disappeared"
    elif sandbox.failed:
        problem = f"the Daytona sandbox failed ({sandbox.state}): {sandbox.error_reason or '?'}"
    elif sandbox.stopped:
        problem = f"the Daytona sandbox is {sandbox.state}" + (
            f" ({sandbox.error_reason})" if sandbox.error_reason else ""
        )
    if problem is not None:
        _fail_and_finish(app, row, held, f"{problem} before the runner reported a final status")
        return
    exit_code = watched.exit_code
    if exit_code is None:
        # Running (or the sandbox is in a passing state such as resizing): look again later.
        _release(row.run_id, held, attempts=0, last_error=None, next_check_at=now + interval)
        return
    if row.exit_code is None:
        # Daytona records the exit code before the logs are flushed: read them on the next pass
        # (which also gives the runner's own final report, sent just before it exits, time).
        _release(
            row.run_id,
            held,
            exit_code=exit_code,
            next_check_at=now + timedelta(seconds=LOG_SETTLE_SECONDS),
        )
        return
    logs = client.logs(row.sandbox_id, row.session_id, row.command_id)
    tail = "\n".join(logs.rstrip("\n").splitlines()[-TAIL_LINES:])
    message = (
        f"the runner in Daytona sandbox {row.sandbox_id} exited with code {exit_code} "
        "before reporting a final status"
    )
    if tail:
        message += f"; the last lines of its output:\n{tail}"
    _fail_and_finish(app, row, held, message)


def _fail_and_finish(app: Flask, row: DaytonaSandbox, held: datetime, message: str) -> None:
    from designrun.services import runs

    if not _still_ours(row.run_id, held):
        return
    if runs.fail_run(row.run_id, message, only_queued=False, reason=FailureReason.RUNNER_EXITED):
        log.warning("run_id=%s: %s", row.run_id, message.splitlines()[0])
    keep = timedelta(seconds=app.config["DAYTONA_KEEP_SECONDS"])
    delete_after = utcnow() + keep
    _release(
        row.run_id,
        held,
        state=SandboxState.FINISHED.value,
        delete_after=delete_after,
        next_check_at=delete_after,
    )


def _delete_sandbox(app: Flask, row: DaytonaSandbox, held: datetime, run_gone: bool) -> None:
    client = client_for(app.config)
    if not _still_ours(row.run_id, held):
        return
    if row.sandbox_id is not None:
        client.delete(row.sandbox_id)
    # Also any sandbox a lost attempt created and never recorded (found by its label).
    for sandbox in client.find(run_labels(app.config, row.run_id)):
        if not sandbox.gone:
            client.delete(sandbox.id)
    log.info("run_id=%s: Daytona sandbox %s deleted", row.run_id, row.sandbox_id)
    if run_gone:
        with write_transaction() as session:
            session.execute(
                delete(DaytonaSandbox).where(
                    DaytonaSandbox.run_id == row.run_id, DaytonaSandbox.claimed_until == held
                )
            )
        return
    _release(row.run_id, held, state=SandboxState.DELETED.value, attempts=0, last_error=None)
