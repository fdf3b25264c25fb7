"""Objects nobody will ever ask for again: deleted runs' objects and never-registered uploads.

Two kinds of work, both in the dispatcher's lease-and-fence shape (background.py), so any
number of processes and hosts may run them at once:

1. **Pending deletions** (``StorageDeletion`` rows). ``delete_run`` writes one row per prefix
   of the run in its own transaction (an outbox) and calls ``delete_now`` after the commit.
   A row whose deletion failed (the store was down) keeps its attempts and last error and is
   due again after a backoff; ``run_once`` retries it until it succeeds.
2. **The orphan sweep** lists ``runs/`` page by page (the cursor survives restarts) and removes
   objects that no artifact names once they are older than ORPHAN_GRACE_SECONDS: an upload URL
   never followed by a registration, an upload that failed half way, the leftovers of a
   deletion. It also removes stale temporary files of the local backend and aborts stale S3
   multipart uploads (a worker killed mid-copy). Keys outside ``runs/`` are never touched;
   neither are keys under ``runs/<x>/`` where ``x`` is not a run id.

Each side effect is done only while this process still holds the lease it took (its
``claimed_until`` value is the fencing token, checked by a conditional UPDATE just before).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from designrun import leases
from designrun.database import write_transaction
from designrun.extensions import db
from designrun.models import Artifact, StorageDeletion, StorageSweep
from designrun.models.types import utcnow
from designrun.storage import get_storage

log = logging.getLogger(__name__)

SWEEP = "orphans"
PREFIX = "runs/"
LEASE = timedelta(seconds=120)
PAGE = 500
PAGES_PER_PASS = 20
RETRY_BATCH = 50


def backoff(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed deletion: 30 s, 1, 2, 4 … minutes, at most 1 h."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


# --- pending deletions -----------------------------------------------------------------------


def queue_deletions(session: Session, prefixes: Iterable[str]) -> list[uuid.UUID]:
    """Record, in the caller's transaction, that everything under ``prefixes`` must go."""
    now = utcnow()
    rows = [StorageDeletion(prefix=p, attempts=0, next_attempt_at=now) for p in sorted(prefixes)]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def _claim_deletion(deletion_id: uuid.UUID, now: datetime) -> datetime | None:
    lease = now + LEASE
    with write_transaction() as session:
        taken = leases.take(
            session, StorageDeletion, StorageDeletion.id == deletion_id, now=now, lease=lease
        )
    return lease if taken else None


def _attempt(deletion_id: uuid.UUID) -> bool:
    """Delete one row's prefix if its lease is ours; True when the objects are gone."""
    now = utcnow()
    held = _claim_deletion(deletion_id, now)
    if held is None:
        return False  # another process holds it
    prefix = db.session.scalar(
        select(StorageDeletion.prefix).where(StorageDeletion.id == deletion_id)
    )
    db.session.rollback()
    if prefix is None:
        return False
    try:
        count = get_storage().delete_prefix(prefix)
    except Exception as exc:
        with write_transaction() as session:
            row = session.get(StorageDeletion, deletion_id)
            if row is not None and row.claimed_until == held:
                row.attempts += 1
                row.last_error = str(exc)[:2000] or type(exc).__name__
                row.next_attempt_at = utcnow() + backoff(row.attempts)
                row.claimed_until = None
        log.warning("objects under %s not deleted (%s); will retry", prefix, exc)
        return False
    with write_transaction() as session:
        session.execute(
            delete(StorageDeletion).where(
                StorageDeletion.id == deletion_id, StorageDeletion.claimed_until == held
            )
        )
    log.info("deleted %s objects under %s", count, prefix)
    return True


def delete_now(deletion_ids: Iterable[uuid.UUID]) -> None:
    """Try the queued deletions at once (after the run's commit); failures stay queued."""
    for deletion_id in deletion_ids:
        try:
            _attempt(deletion_id)
        except Exception:
            log.exception("deletion %s: unexpected failure; the sweep will retry", deletion_id)


def _retry_due() -> int:
    now = utcnow()
    due = list(
        db.session.scalars(
            select(StorageDeletion.id)
            .where(
                StorageDeletion.next_attempt_at <= now,
                leases.free(StorageDeletion, now),
            )
            .order_by(StorageDeletion.next_attempt_at)
            .limit(RETRY_BATCH)
        )
    )
    db.session.rollback()
    return sum(1 for deletion_id in due if _attempt(deletion_id))


# --- the sweep of runs/ ------------------------------------------------------------------------


def _claim_sweep(now: datetime) -> tuple[datetime, str | None] | None:
    """Take the sweep's lease if it is due and free: (our lease, the cursor) or None."""
    if db.session.get(StorageSweep, SWEEP) is None:
        db.session.rollback()
        try:
            with write_transaction() as session:
                session.add(StorageSweep(name=SWEEP, next_run_at=now))
        except IntegrityError:
            pass  # another process created it first
    db.session.rollback()
    lease = now + LEASE
    with write_transaction() as session:
        due = (StorageSweep.name == SWEEP, StorageSweep.next_run_at <= now)
        if not leases.take(session, StorageSweep, *due, now=now, lease=lease):
            return None
        cursor = session.scalar(select(StorageSweep.cursor).where(StorageSweep.name == SWEEP))
    return lease, cursor


def _renew(held: datetime, **values: Any) -> datetime | None:
    """Move our lease on (the fencing check before a side effect); None when lost."""
    lease = utcnow() + LEASE
    with write_transaction() as session:
        result: Any = session.execute(
            update(StorageSweep)
            .where(StorageSweep.name == SWEEP, StorageSweep.claimed_until == held)
            .values(claimed_until=lease, **values)
        )
    return lease if result.rowcount == 1 else None


def _release(held: datetime, **values: Any) -> None:
    with write_transaction() as session:
        session.execute(
            update(StorageSweep)
            .where(StorageSweep.name == SWEEP, StorageSweep.claimed_until == held)
            .values(claimed_until=None, **values)
        )


def _is_run_key(key: str) -> bool:
    parts = key.split("/", 2)
    if len(parts) < 3:
        return False
    try:
        uuid.UUID(parts[1])
    except ValueError:
        return False
    return True


def _sweep(app: Flask) -> int:
    now = utcnow()
    claimed = _claim_sweep(now)
    if claimed is None:
        return 0
    held, cursor = claimed
    storage = get_storage()
    grace = timedelta(seconds=int(app.config["ORPHAN_GRACE_SECONDS"]))
    # utcnow() is naive UTC (the database's convention); the store's times are aware.
    cutoff = (now - grace).replace(tzinfo=UTC)
    removed = 0
    if cursor is None:
        removed += storage.remove_partials(cutoff, PREFIX)
    listing = storage.list_objects(PREFIX, start_after=cursor)
    for _ in range(PAGES_PER_PASS):
        page = [item for _, item in zip(range(PAGE), listing, strict=False)]
        stale = [item.key for item in page if _is_run_key(item.key) and item.last_modified < cutoff]
        registered = set()
        if stale:
            registered = set(
                db.session.scalars(
                    select(Artifact.storage_key).where(Artifact.storage_key.in_(stale))
                )
            )
            db.session.rollback()
        orphans = [key for key in stale if key not in registered]
        if orphans:
            renewed = _renew(held)
            if renewed is None:
                return removed  # another process took the sweep over: it goes on from there
            held = renewed
            for key in orphans:
                storage.delete(key)
                log.info("orphan sweep: removed %s", key)
            removed += len(orphans)
        if len(page) < PAGE:
            interval = timedelta(seconds=int(app.config["ORPHAN_SWEEP_INTERVAL"]))
            _release(held, cursor=None, next_run_at=utcnow() + interval)
            return removed
        renewed = _renew(held, cursor=page[-1].key)
        if renewed is None:
            return removed
        held = renewed
    _release(held)  # more to list: the next tick (of any process) goes on from the cursor
    return removed


def run_once(app: Flask) -> int:
    """Retry due deletions, then sweep a share of ``runs/``; return how many were handled."""
    with app.app_context():
        try:
            return _retry_due() + _sweep(app)
        finally:
            db.session.remove()
