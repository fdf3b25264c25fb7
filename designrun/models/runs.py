"""Runs, their events and their artifacts (one aggregate: everything hangs off a run)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    func,
    select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column

from designrun.models.base import Base
from designrun.models.types import JSONType, UTCDateTime, utcnow, uuid7


class RunStatus(StrEnum):
    """The values are the wire strings (API.md § Runs: the state machine)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class FailureReason(StrEnum):
    """Why a run ended other than ``completed`` (API.md Part 2 § Run lifecycle): wire strings."""

    AGENT_ERROR = "agent_error"
    RUNNER_LOST = "runner_lost"
    START_TIMEOUT = "start_timeout"
    DISPATCH_FAILED = "dispatch_failed"
    RUNNER_EXITED = "runner_exited"
    CANCELLED_BY_USER = "cancelled_by_user"


class Actor(StrEnum):
    """Who made a status change: the ``by`` of a transition."""

    RUNNER = "runner"
    USER = "user"
    SYSTEM = "system"


class DispatchState(StrEnum):
    """Where the run's trigger is: ``pending`` (in the outbox), ``sent``, ``failed``, ``none``."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    NONE = "none"


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # GET /api/design/runs: newest first per account, keyset on (created_at, id) ...
        Index("ix_runs_account_created", "account_id", "created_at", "id"),
        # ... and the same filtered by status.
        Index("ix_runs_account_status_created", "account_id", "status", "created_at", "id"),
        # The reapers: active runs by status and age.
        Index("ix_runs_status_heartbeat", "status", "last_heartbeat_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("accounts.id", ondelete="CASCADE")
    )
    prompt: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED.value)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set explicitly by the services: it follows the run's own fields, not events/artifacts.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # --- the lifecycle (migration 0003) ---
    failure_reason: Mapped[str | None] = mapped_column(String(32))
    # The last runner callback of any kind (kept to HEARTBEAT_RESOLUTION, services/runs.py).
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The run this one retries. Not a foreign key: deleting the original keeps the pointer.
    retry_of: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The eventCount the runner sent with its terminal status (None: it sent none).
    expected_event_count: Mapped[int | None] = mapped_column(BigInteger)
    dispatch_backend: Mapped[str | None] = mapped_column(String(16))
    dispatch_state: Mapped[str] = mapped_column(
        String(16), default=DispatchState.NONE.value, server_default=DispatchState.NONE.value
    )
    dispatch_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dispatch_last_error: Mapped[str | None] = mapped_column(Text)
    # When the trigger was delivered (the start of RUN_START_TIMEOUT).
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RunEvent(Base):
    __tablename__ = "run_events"
    __table_args__ = (
        # The per-run sequence is the log's order and the tailing cursor: unique per run.
        Index("uq_run_events_run_sequence", "run_id", "sequence", unique=True),
        # Retries must never duplicate: NULL keys are distinct on SQLite and PostgreSQL alike.
        Index("uq_run_events_run_idempotency_key", "run_id", "idempotency_key", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("runs.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    event_type: Mapped[str] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(Text)
    # "metadata" is reserved by SQLAlchemy's declarative base; the column keeps the name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (
        Index("ix_artifacts_run_created", "run_id", "created_at", "id"),
        # A runner's retried registration/upload is recognised by its key (docs/api-decisions.md).
        Index("uq_artifacts_run_idempotency_key", "run_id", "idempotency_key", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("runs.id", ondelete="CASCADE"))
    artifact_type: Mapped[str] = mapped_column(String(100))
    storage_key: Mapped[str] = mapped_column(String(1024))
    content_type: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RunTransition(Base):
    """One status change of a run, written in the same transaction as the change itself."""

    __tablename__ = "run_transitions"
    __table_args__ = (Index("ix_run_transitions_run", "run_id", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("runs.id", ondelete="CASCADE"))
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Events stored for the run: sequences are gapless from 1 (services/event_store.py), so the
# highest is the count, read through the (run_id, sequence) index. Deferred: only the user
# endpoints load it (with undefer), never the FOR UPDATE reads of the write paths.
Run.event_count = column_property(  # type: ignore[attr-defined]
    select(func.coalesce(func.max(RunEvent.sequence), 0))
    .where(RunEvent.run_id == Run.id)
    .correlate_except(RunEvent)
    .scalar_subquery(),
    deferred=True,
)
