"""Sends pending runner triggers (the outbox) from a thread pool, with retries and backoff.

How a trigger travels:
1. ``create_run`` writes the run and its Trigger row in one transaction, then tells
   services/hooks.py, where this module registered ``wake`` (services never import triggers).
2. ``run_once`` finds due rows and *leases* each one (``claimed_until``) with a conditional
   UPDATE, so that one process only sends it, whatever number of workers or hosts poll.
3. ``process`` sends the job; on success the row is deleted. On failure it records the attempt
   and releases the row, due again after the backoff (a timer wakes the dispatcher then; inline,
   without a pool, it sleeps and retries itself); when TRIGGER_MAX_ATTEMPTS are spent the run is
   marked ``failed`` with an ``error`` event.
4. If the process dies meanwhile, the lease runs out (at most LEASE_MARGIN seconds after the
   attempt or sleep it covered) and the poller of any live process takes the row over: a pending
   trigger is sent within 30 seconds after a restart. The lease timestamp doubles as a fencing
   token: before each attempt and each write, a task checks the row still carries the lease it
   set, so a task whose lease ran out (queued in a busy pool, or a slow send) stops there.

Each job re-reads the row and the run and returns early when there is nothing left to do, so a
second process or a duplicate wake is harmless. Attempts are persisted in the row (not in an
in-memory retry helper) because they must survive a restart.

In tests nothing starts by itself: call ``run_once(app)`` (sends inline) or ``start(app)``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import delete, select, update

from designrun import leases, observability
from designrun.database import write_transaction
from designrun.extensions import db
from designrun.models import DispatchState, FailureReason, Run, RunStatus, Trigger
from designrun.models.types import utcnow
from designrun.services import hooks, runs
from designrun.triggers import attempt_seconds, sandboxes
from designrun.triggers.jobs import TriggerError, send_job
from designrun.triggers.local import local_runner

log = logging.getLogger(__name__)

LEASE_MARGIN = 5.0  # seconds a lease outlives the attempt or sleep it covers
POLL_INTERVAL = 2.0
BATCH = 20
_EXTENSION = "designrun.dispatcher"


class _State:
    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dr-trigger")
        self.stop = threading.Event()
        self.poller: threading.Thread | None = None


def start(app: Flask, workers: int = 8, poll_interval: float = POLL_INTERVAL) -> None:
    """Start this process's pool and poller (idempotent). Called by wsgi.py, not create_app."""
    if app.extensions.get(_EXTENSION) is not None:
        return
    state = _State(workers)
    app.extensions[_EXTENSION] = state

    def poll() -> None:
        while not state.stop.is_set():
            try:
                run_once(app)
            except Exception:
                log.exception("trigger poller: pass failed")
            state.stop.wait(poll_interval)

    state.poller = threading.Thread(target=poll, name="dr-trigger-poller", daemon=True)
    state.poller.start()


def stop(app: Flask, wait: bool = True) -> None:
    """Stop the poller and the pool; leased rows are picked up again by any live process."""
    state: _State | None = app.extensions.pop(_EXTENSION, None)
    if state is None:
        return
    state.stop.set()
    state.executor.shutdown(wait=wait, cancel_futures=True)
    if state.poller is not None and wait:
        state.poller.join(timeout=5)


def wake(app: Flask) -> None:
    """Look for due triggers now, in the background (no-op when the dispatcher is not started)."""
    state: _State | None = app.extensions.get(_EXTENSION)
    if state is None or state.stop.is_set():
        return
    try:
        state.executor.submit(run_once, app)
    except RuntimeError:  # shutting down
        return


hooks.on_work(wake)


def run_once(app: Flask) -> int:
    """Lease every due trigger and send it (in the pool if started, else inline); return count."""
    state: _State | None = app.extensions.get(_EXTENSION)
    claimed: list[tuple[uuid.UUID, datetime]] = []
    with app.app_context():
        try:
            now = utcnow()
            due = db.session.execute(
                select(Trigger.id, Trigger.backend)
                .where(
                    Trigger.next_attempt_at <= now,
                    leases.free(Trigger, now),
                )
                .order_by(Trigger.next_attempt_at)
                .limit(BATCH)
            ).all()
            db.session.rollback()
            lease = _lease(app, 0)
            for trigger_id, backend in due:
                # A local run needs a free slot on this host first; the rest wait, queued.
                if backend == "local" and not local_runner(app).reserve(trigger_id):
                    continue
                if _claim(trigger_id, now, lease):
                    claimed.append((trigger_id, lease))
                elif backend == "local":
                    local_runner(app).release(trigger_id)
        finally:
            db.session.remove()
    for trigger_id, held in claimed:
        if state is not None and not state.stop.is_set():
            state.executor.submit(process, app, trigger_id, held)
        else:
            process(app, trigger_id, held)
    return len(claimed)


def _lease(app: Flask, extra_seconds: float) -> datetime:
    seconds = attempt_seconds(app.config) + extra_seconds + LEASE_MARGIN
    return utcnow() + timedelta(seconds=seconds)


def _claim(trigger_id: uuid.UUID, now: datetime, lease: datetime) -> bool:
    """Take the row's lease if nobody holds it; True when this process now owns it."""
    with write_transaction() as session:
        return leases.take(session, Trigger, Trigger.id == trigger_id, now=now, lease=lease)


def _renew(
    trigger_id: uuid.UUID,
    held: datetime,
    lease: datetime | None,
    run_id: uuid.UUID | None = None,
    **values: Any,
) -> bool:
    """Move our lease ``held`` to ``lease`` (None releases it) and set ``values``.

    False when the lease is not ours any more.

    The lease's own timestamp is the fencing token: a task that waited in a busy pool, or a
    send that outlived its lease, finds another value there once a poll has taken the row
    over, and stops instead of sending the job a second time.
    """
    with write_transaction() as session:
        result: Any = session.execute(
            update(Trigger)
            .where(Trigger.id == trigger_id, Trigger.claimed_until == held)
            .values(claimed_until=lease, **values)
        )
        if result.rowcount == 1 and run_id is not None and "attempts" in values:
            # The run's visible dispatch info follows the row, in the same transaction.
            session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(
                    dispatch_attempts=values["attempts"],
                    dispatch_last_error=values.get("last_error"),
                )
            )
    return bool(result.rowcount == 1)


def backoff(app: Flask, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failure: base x 1, 2, 4, 8 ... (at most 60x)."""
    return float(app.config["TRIGGER_BACKOFF_BASE"]) * min(2 ** (attempts - 1), 60)


def process(app: Flask, trigger_id: uuid.UUID, held: datetime) -> None:
    """Send one trigger leased until ``held`` until it succeeds or its attempts are spent.

    Stops early when the lease is no longer ours (see ``_renew``). Never raises.
    """
    try:
        with app.app_context():
            _process(app, trigger_id, held)
    except Exception:
        log.exception("trigger=%s: unexpected failure; the lease will expire and retry", trigger_id)
    finally:
        local_runner(app).release(trigger_id)  # a local slot it reserved but did not use


def _process(app: Flask, trigger_id: uuid.UUID, held: datetime) -> None:
    config = app.config
    state: _State | None = app.extensions.get(_EXTENSION)
    while True:
        try:
            # Restart the lease clock now: time spent queued in the pool must not eat the send's.
            renewed = _lease(app, 0)
            if not _renew(trigger_id, held, renewed):
                return  # the row is gone, or another poll took it over
            held = renewed
            trigger = db.session.get(Trigger, trigger_id)
            if trigger is None:
                return
            run = db.session.get(Run, trigger.run_id)
            if run is None or run.status != RunStatus.QUEUED.value:
                _delete(trigger_id)  # the run is gone or already moved on: nothing to start
                return
            db.session.commit()  # hold no read transaction (snapshot) over the network call
            try:
                with observability.bound_request_id(trigger.request_id):
                    _start_runner(app, trigger, run)
            except TriggerError as exc:
                error = str(exc)
                observability.trigger_attempt(trigger.backend, failed=True)
            else:
                observability.trigger_attempt(trigger.backend, failed=False)
                _delete(trigger_id, run.id, trigger.attempts + 1)
                log.info("run_id=%s: runner started (%s)", run.id, trigger.backend)
                return
            attempts = trigger.attempts + 1
            run_id = run.id
            if attempts >= config["TRIGGER_MAX_ATTEMPTS"]:
                final = _lease(app, 0)
                if not _renew(trigger_id, held, final, run_id, attempts=attempts, last_error=error):
                    return
                message = f"runner could not be started after {attempts} attempts: {error}"
                log.warning("run_id=%s: %s", run_id, message)
                runs.fail_run(run_id, message, reason=FailureReason.DISPATCH_FAILED)
                if trigger.backend == sandboxes.BACKEND:
                    sandboxes.abandon(run_id)  # a sandbox a failed attempt left is deleted
                _delete(trigger_id)
                return
            delay = backoff(app, attempts)
            log.info(
                "run_id=%s: attempt %s failed (%s); retrying in %.1fs",
                run_id,
                attempts,
                error,
                delay,
            )
            next_attempt = utcnow() + timedelta(seconds=delay)
            if state is not None:
                # A started dispatcher does not sleep in a pool thread: the row is released,
                # due again at ``next_attempt``, and a timer (or any poller) picks it up then.
                # A Daytona outage then never ties up the pool that new runs need.
                if _renew(
                    trigger_id,
                    held,
                    None,
                    run_id,
                    attempts=attempts,
                    last_error=error,
                    next_attempt_at=next_attempt,
                ):
                    _wake_later(app, state, delay)
                return
            renewed = _lease(app, delay)
            if not _renew(
                trigger_id,
                held,
                renewed,
                run_id,
                attempts=attempts,
                last_error=error,
                next_attempt_at=next_attempt,
            ):
                return
            held = renewed
        finally:
            db.session.remove()
        time.sleep(delay)  # inline (tests, run_once without a pool): retry in this thread


def _wake_later(app: Flask, state: _State, delay: float) -> None:
    timer = threading.Timer(delay, lambda: None if state.stop.is_set() else wake(app))
    timer.daemon = True
    timer.start()


def _start_runner(app: Flask, trigger: Trigger, run: Run) -> None:
    """Hand the run to its backend; raise TriggerError when that failed (worth a retry)."""
    if trigger.backend == "local":
        try:
            local_runner(app).launch(trigger.id, run, trigger.origin)
        except OSError as exc:
            raise TriggerError(f"the local runner could not be started: {exc}") from None
        return
    if trigger.backend == sandboxes.BACKEND:
        sandboxes.launch(app, run, trigger.origin)
        return
    send_job(app.config, run, trigger.origin)


def _delete(
    trigger_id: uuid.UUID, sent_run: uuid.UUID | None = None, attempts: int | None = None
) -> None:
    """Delete the row; with ``sent_run``, record on the run that its trigger was delivered."""
    # A Core DELETE: the session's identity map may hold a row another process (or delete_run)
    # has deleted meanwhile, and an ORM delete of it would warn "expected to delete 1 row".
    with write_transaction() as session:
        session.execute(delete(Trigger).where(Trigger.id == trigger_id))
        if sent_run is not None:
            session.execute(
                update(Run)
                .where(Run.id == sent_run, Run.dispatch_state == DispatchState.PENDING.value)
                .values(
                    dispatch_state=DispatchState.SENT.value,
                    dispatch_attempts=attempts,
                    dispatched_at=utcnow(),
                )
            )
