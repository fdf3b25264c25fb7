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

``clean_orphans_once`` (a sweep, run at start-up and every DAYTONA_CLEAN_INTERVAL) deletes
sandboxes labelled by this installation for runs that are finished or unknown and that no row
is looking after. Every Daytona call happens on a background thread, never a request's.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import object_session

from designrun.database import write_transaction
from designrun.extensions import db
from designrun.models import (
    DaytonaSandbox,
    FailureReason,
    Run,
    RunStatus,
    RunTransition,
    SandboxState,
    SweepLease,
    Trigger,
)
from designrun.models.types import utcnow
from designrun.services import hooks
from designrun.triggers.daytona_sdk import DaytonaClient, SandboxError, SandboxSpec, client_for
from designrun.triggers.jobs import TriggerError, job_body

log = logging.getLogger(__name__)

BACKEND = "daytona"
LABEL_RUN = "designrun.run_id"
LABEL_INSTANCE = "designrun.instance"
LEASE_SECONDS = 120.0  # a watchdog pass over one row: a few Daytona calls of at most 30 s each
LOG_SETTLE_SECONDS = 2.0  # between seeing the exit code and reading the logs for the tail
MAX_BACKOFF_SECONDS = 300.0
TAIL_LINES = 40
BATCH = 20
ORPHANS_LEASE = "daytona-orphans"


# --- settings ------------------------------------------------------------------------------------


def instance_label(config: Mapping[str, Any]) -> str:
    """This installation's label value: derived from RUNNER_AUTH_SECRET, the same on every host.

    Two designrun installations sharing one Daytona organisation never clean up each other's
    sandboxes. The value is a hash; nothing of the secret can be recovered from it.
    """
    secret = str(config["RUNNER_AUTH_SECRET"]).encode()
    return hashlib.sha256(b"designrun-instance:" + secret).hexdigest()[:16]


def run_labels(config: Mapping[str, Any], run_id: uuid.UUID) -> dict[str, str]:
    """The labels a run's sandbox carries (and is found by)."""
    return {LABEL_RUN: str(run_id), LABEL_INSTANCE: instance_label(config)}


def allow_lists(config: Mapping[str, Any], callback_url: str) -> tuple[str | None, str | None]:
    """(domain allow-list, CIDR allow-list) for a sandbox: the callback host plus the extras.

    DAYTONA_NETWORK_ALLOW adds comma-separated domains or CIDRs; ``*`` sets no allow-list at
    all (the organisation's default network policy applies).
    """
    extra = [item.strip() for item in (config.get("DAYTONA_NETWORK_ALLOW") or "").split(",")]
    if "*" in extra:
        return None, None
    domains: list[str] = []
    networks: list[str] = []
    for item in [urlsplit(callback_url).hostname or "", *extra]:
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            domains.append(item.lower())
    return (",".join(dict.fromkeys(domains)) or None, ",".join(dict.fromkeys(networks)) or None)


def sandbox_spec(config: Mapping[str, Any], run_id: uuid.UUID, callback_url: str) -> SandboxSpec:
    """How the run's sandbox is created (docs/daytona.md § Settings)."""
    domains, networks = allow_lists(config, callback_url)
    return SandboxSpec(
        labels=run_labels(config, run_id),
        snapshot=config.get("DAYTONA_SNAPSHOT"),
        image=None if config.get("DAYTONA_SNAPSHOT") else config.get("DAYTONA_IMAGE"),
        cpu=config.get("DAYTONA_CPU"),
        memory=config.get("DAYTONA_MEMORY"),
        disk=config.get("DAYTONA_DISK"),
        auto_stop_minutes=config.get("DAYTONA_AUTO_STOP_MINUTES"),
        auto_delete_minutes=config.get("DAYTONA_AUTO_DELETE_MINUTES"),
        domain_allow_list=domains,
        network_allow_list=networks,
    )


def runner_argv(config: Mapping[str, Any], job_path: str) -> list[str]:
    """``designrun-runner --job FILE [-- agent …]``: no secret on the command line."""
    import shlex

    argv = ["designrun-runner", "--job", job_path, "--heartbeat", "10"]
    agent = config.get("DAYTONA_AGENT_COMMAND")
    return [*argv, "--", *shlex.split(agent)] if agent else argv


def session_name(run_id: uuid.UUID) -> str:
    return f"designrun-{run_id}"


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
                    or_(
                        DaytonaSandbox.claimed_until.is_(None),
                        DaytonaSandbox.claimed_until < now,
                    ),
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
        result: Any = session.execute(
            update(DaytonaSandbox)
            .where(
                DaytonaSandbox.run_id == run_id,
                or_(DaytonaSandbox.claimed_until.is_(None), DaytonaSandbox.claimed_until < now),
            )
            .values(claimed_until=lease)
        )
    return bool(result.rowcount == 1)


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


# --- orphans (a sweep) ---------------------------------------------------------------------------


def clean_orphans_once(app: Flask) -> int:
    """Delete this installation's sandboxes whose run is finished or unknown; return count.

    Runs at start-up and every DAYTONA_CLEAN_INTERVAL; at most one process at a time (a named
    lease), and not again within a minute of the last pass of any process. Sandboxes that a
    row still looks after (a finished run kept for DAYTONA_KEEP_SECONDS) are left to it.
    """
    from designrun.triggers import selected_backend

    if selected_backend(app.config) != BACKEND or not app.config.get("DAYTONA_API_KEY"):
        return 0
    with app.app_context():
        try:
            held = _claim_named(ORPHANS_LEASE)
            if held is None:
                return 0
            try:
                return _clean_orphans(app)
            finally:
                _release_named(ORPHANS_LEASE, held)
        finally:
            db.session.remove()


def _clean_orphans(app: Flask) -> int:
    client = client_for(app.config)
    deleted = 0
    labels = {LABEL_INSTANCE: instance_label(app.config)}
    for sandbox in client.iter_labelled(labels):
        if sandbox.gone:
            continue
        try:
            run_id = uuid.UUID(sandbox.labels.get(LABEL_RUN, ""))
        except ValueError:
            run_id = None
        if run_id is not None:
            status = db.session.scalar(select(Run.status).where(Run.id == run_id))
            row = db.session.get(DaytonaSandbox, run_id)
            db.session.rollback()
            if status is not None and not RunStatus(status).terminal:
                continue  # an active run: its own sandbox, or one a launch is about to record
            if row is not None and row.state != SandboxState.DELETED.value:
                continue  # the watchdog deletes it (after DAYTONA_KEEP_SECONDS)
        try:
            if client.delete(sandbox.id):
                deleted += 1
                log.info("run_id=%s: orphaned Daytona sandbox %s deleted", run_id, sandbox.id)
        except SandboxError as exc:
            log.warning("orphaned Daytona sandbox %s not deleted yet: %s", sandbox.id, exc)
    return deleted


def _claim_named(name: str) -> datetime | None:
    now = utcnow()
    lease = now + timedelta(seconds=LEASE_SECONDS * 5)
    with write_transaction() as session:
        if session.get(SweepLease, name) is None:
            session.add(SweepLease(name=name))
            session.flush()
        result: Any = session.execute(
            update(SweepLease)
            .where(
                SweepLease.name == name,
                or_(SweepLease.claimed_until.is_(None), SweepLease.claimed_until < now),
                or_(
                    SweepLease.last_run_at.is_(None),
                    SweepLease.last_run_at < now - timedelta(seconds=60),
                ),
            )
            .values(claimed_until=lease)
        )
    return lease if result.rowcount == 1 else None


def _release_named(name: str, held: datetime) -> None:
    with write_transaction() as session:
        session.execute(
            update(SweepLease)
            .where(SweepLease.name == name, SweepLease.claimed_until == held)
            .values(claimed_until=None, last_run_at=utcnow())
        )
