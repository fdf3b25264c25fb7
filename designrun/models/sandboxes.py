"""Daytona sandboxes: one row per run started with the ``daytona`` backend.

The row outlives its run on purpose (no foreign key): when a run is deleted, its sandbox must
still be found and deleted. The watchdog (triggers/sandboxes.py) leases a due row with
``claimed_until`` exactly as the dispatcher leases a trigger, so one process only acts on it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from designrun.models.base import Base
from designrun.models.types import UTCDateTime, utcnow


class SandboxState(StrEnum):
    """Where a run's sandbox stands, as far as designrun knows."""

    LAUNCHING = "launching"  # the dispatcher is creating it / starting the runner in it
    RUNNING = "running"  # the runner command was started: the watchdog polls it
    FINISHED = "finished"  # the run is over: the sandbox is deleted at ``delete_after``
    DELETED = "deleted"  # Daytona accepted the deletion


class DaytonaSandbox(Base):
    __tablename__ = "daytona_sandboxes"
    __table_args__ = (Index("ix_daytona_sandboxes_due", "next_check_at"),)

    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=SandboxState.LAUNCHING.value)
    sandbox_id: Mapped[str | None] = mapped_column(String(255))
    session_id: Mapped[str | None] = mapped_column(String(255))
    command_id: Mapped[str | None] = mapped_column(String(255))
    # Set once the watchdog has seen the command exit; the logs are read on the next pass.
    exit_code: Mapped[int | None] = mapped_column(Integer)
    delete_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_check_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Consecutive failed Daytona calls of the watchdog (its backoff), and the last one's text.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SweepLease(Base):
    """A named lease for a sweep that has no row of its own (the orphan sandbox cleanup)."""

    __tablename__ = "daytona_sweep_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
