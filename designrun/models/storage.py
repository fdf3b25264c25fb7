"""Storage housekeeping: object deletions still to do, and the orphan sweep's lease.

``StorageDeletion`` is an outbox like the trigger's: a run's deletion writes one row per prefix
in its own transaction, the objects are deleted after the commit, and a row whose deletion
failed (the store was down) stays, due again after a backoff, until the orphan sweep succeeds.
``StorageSweep`` holds one row per sweep: its lease (``claimed_until``, also the fencing token)
and where the incremental listing of ``runs/`` has got to (``cursor``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from designrun.models.base import Base
from designrun.models.types import UTCDateTime, utcnow, uuid7


class StorageDeletion(Base):
    __tablename__ = "storage_deletions"
    __table_args__ = (Index("ix_storage_deletions_due", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    # A "runs/<id>/" prefix (as the run's keys spelt it): everything under it goes.
    prefix: Mapped[str] = mapped_column(String(1024))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StorageSweep(Base):
    __tablename__ = "storage_sweeps"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last key examined by the pass under way (None: the next pass starts from the top).
    cursor: Mapped[str | None] = mapped_column(String(1024))
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
