"""The trigger outbox: one row per runner job still to be sent.

Written in the same transaction as the run, so a run is never created without its trigger
and a trigger pending when the service stops (gracefully or by a crash) is still there when it
starts again. A row is leased (``claimed_until``) while one process sends it; a lease that
runs out makes the row available to any process again.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from designrun.models.base import Base
from designrun.models.types import UTCDateTime, utcnow, uuid7


class Trigger(Base):
    __tablename__ = "triggers"
    __table_args__ = (Index("ix_triggers_due", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    run_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("runs.id", ondelete="CASCADE"), unique=True
    )
    backend: Mapped[str] = mapped_column(String(32))
    # The origin for callbackUrl when EXPO_PUBLIC_WORKER_ORIGIN is unset: the create request's.
    origin: Mapped[str] = mapped_column(String(1024))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # X-Request-ID of the request that created the run: sent on to the runner, which sends it
    # back on its callbacks, so the run can be followed through the logs of every host.
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
