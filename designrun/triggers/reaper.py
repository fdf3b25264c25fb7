"""The reapers: runs whose runner went silent end ``failed`` with a reason (API.md Part 2).

- ``runner_lost``: a ``running`` run with no runner callback (``lastHeartbeatAt``, else its
  start) for RUN_STALE_AFTER seconds.
- ``start_timeout``: a ``queued`` run whose trigger was delivered (``dispatch.state: sent``) and
  whose runner never reported within RUN_START_TIMEOUT seconds.

Safe with any number of processes and hosts on one database, in the dispatcher's discipline: a
query finds what looks due, then each run is *claimed by its own conditional transition*: the
row is locked (``FOR UPDATE`` / SQLite's write lock) and the condition re-checked under the lock
before the run is failed, in the same transaction as its transition row and ``error`` event.
The side effect is that transaction, so there is nothing left to fence: a second reaper that
found the same run waits for the lock, sees it terminal (or freshly heartbeating) and does
nothing. A run is never failed twice.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime

from flask import Flask
from sqlalchemy import ColumnElement, func, select

from designrun.extensions import db
from designrun.models import DispatchState, FailureReason, Run, RunStatus
from designrun.services import runs
from designrun.services.lifecycle import stale_before

log = logging.getLogger(__name__)

BATCH = 100


def _lost(cutoff: datetime) -> ColumnElement[bool]:
    return (Run.status == RunStatus.RUNNING.value) & (
        func.coalesce(Run.last_heartbeat_at, Run.started_at, Run.created_at) < cutoff
    )


def _silent(cutoff: datetime) -> ColumnElement[bool]:
    return (
        (Run.status == RunStatus.QUEUED.value)
        & (Run.dispatch_state == DispatchState.SENT.value)
        & (func.coalesce(Run.last_heartbeat_at, Run.dispatched_at, Run.created_at) < cutoff)
    )


def _still(run: Run, reason: FailureReason, cutoff: datetime) -> bool:
    """The reaper's condition, re-read on the locked row."""
    if reason == FailureReason.RUNNER_LOST:
        last = run.last_heartbeat_at or run.started_at or run.created_at
        return run.status == RunStatus.RUNNING.value and last < cutoff
    last = run.last_heartbeat_at or run.dispatched_at or run.created_at
    return (
        run.status == RunStatus.QUEUED.value
        and run.dispatch_state == DispatchState.SENT.value
        and last < cutoff
    )


def run_once(app: Flask) -> int:
    """Fail every run that is due (runner_lost, start_timeout); return how many this pass did."""
    failed = 0
    with app.app_context():
        try:
            config = app.config
            plans = [
                (
                    FailureReason.RUNNER_LOST,
                    stale_before(config["RUN_STALE_AFTER"]),
                    _lost,
                    "no runner callback for {s} seconds (RUN_STALE_AFTER): the runner is lost",
                    config["RUN_STALE_AFTER"],
                ),
                (
                    FailureReason.START_TIMEOUT,
                    stale_before(config["RUN_START_TIMEOUT"]),
                    _silent,
                    "the runner never reported within {s} seconds of its trigger being "
                    "delivered (RUN_START_TIMEOUT)",
                    config["RUN_START_TIMEOUT"],
                ),
            ]
            for reason, cutoff, condition, text, seconds in plans:
                due = list(db.session.scalars(select(Run.id).where(condition(cutoff)).limit(BATCH)))
                db.session.rollback()
                for run_id in due:
                    if runs.fail_run(
                        run_id,
                        text.format(s=seconds),
                        only_queued=reason == FailureReason.START_TIMEOUT,
                        reason=reason,
                        still=functools.partial(_still, reason=reason, cutoff=cutoff),
                    ):
                        failed += 1
        finally:
            db.session.remove()
    return failed
