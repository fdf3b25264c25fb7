"""Orphaned Daytona sandboxes: deleted at start-up and every DAYTONA_CLEAN_INTERVAL (a sweep).

An orphan carries this installation's label but belongs to a run that is finished or unknown
and that no ``daytona_sandboxes`` row looks after any more: left by a crash between creating a
sandbox and recording it, by a row removed with its run, or by a deletion Daytona lost.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import or_, select, update

from designrun import leases
from designrun.database import write_transaction
from designrun.extensions import db
from designrun.models import DaytonaSandbox, Run, RunStatus, SandboxState, SweepLease
from designrun.models.types import utcnow
from designrun.triggers.daytona_sdk import SandboxError, client_for
from designrun.triggers.sandbox_settings import (
    BACKEND,
    LABEL_INSTANCE,
    LABEL_RUN,
    instance_label,
)

log = logging.getLogger(__name__)

LEASE_NAME = "daytona-orphans"
LEASE_SECONDS = 600.0  # one pass: a page of list calls and a delete per orphan
MIN_GAP_SECONDS = 60.0  # no second pass (another worker starting) within this long


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
            held = _claim_named(LEASE_NAME)
            if held is None:
                return 0
            try:
                return _clean_orphans(app)
            finally:
                _release_named(LEASE_NAME, held)
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
    lease = now + timedelta(seconds=LEASE_SECONDS)
    with write_transaction() as session:
        if session.get(SweepLease, name) is None:
            session.add(SweepLease(name=name))
            session.flush()
        rested = or_(
            SweepLease.last_run_at.is_(None),
            SweepLease.last_run_at < now - timedelta(seconds=MIN_GAP_SECONDS),
        )
        taken = leases.take(
            session, SweepLease, SweepLease.name == name, rested, now=now, lease=lease
        )
    return lease if taken else None


def _release_named(name: str, held: datetime) -> None:
    with write_transaction() as session:
        session.execute(
            update(SweepLease)
            .where(SweepLease.name == name, SweepLease.claimed_until == held)
            .values(claimed_until=None, last_run_at=utcnow())
        )
