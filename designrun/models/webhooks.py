"""Webhook endpoints of an account and the durable queue of their deliveries.

A delivery row is written in the same transaction as the run's terminal transition (so a run
never finishes without its notifications queued, nor are they queued for a change that rolled
back), then sent by the webhook sweep (triggers/webhooks.py) with the dispatcher's lease and
fencing pattern. One row per endpoint, run and event type (a unique index): an event is
delivered once per endpoint, with the same ``message_id`` (the ``webhook-id`` header) on every
retry, so a receiver can de-duplicate the rare repeat after a crash mid-delivery.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from designrun.models.base import Base
from designrun.models.types import JSONType, UTCDateTime, utcnow, uuid7


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_account_created", "account_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("accounts.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSONType)
    # The signing secret (``whsec_`` + base64). Kept in clear because every delivery is signed
    # with it; it is returned once, at creation, and never logged or listed.
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("uq_webhook_deliveries_event", "endpoint_id", "run_id", "event_type", unique=True),
        # The sweep: due pending rows, oldest first.
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        # The delivery log of an endpoint, newest first.
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    message_id: Mapped[str] = mapped_column(String(64))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    # No foreign key: a run deleted after it finished is still announced (the payload is kept).
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_type: Mapped[str] = mapped_column(String(32))
    # The body exactly as it is signed and sent, the same bytes on every retry.
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The last few attempts, newest last: [{"at", "statusCode", "error"}] (at most 10 kept).
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
