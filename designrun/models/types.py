"""Column types and id/time helpers shared by every model.

Ids are UUIDv7 (time-ordered, still UUIDs): random v4 keys scatter inserts across the
primary-key index and cost about a third of bulk insert speed (bench/README.md).
Timestamps are stored as naive UTC and get their ``Z`` only in api/serializers.py.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


def uuid7() -> uuid.UUID:
    """A version-7 UUID: 48-bit Unix milliseconds, then 74 random bits (RFC 9562)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return uuid.UUID(int=value)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class UTCDateTime(TypeDecorator[datetime]):
    """Naive-UTC storage on every backend; aware datetimes are converted on the way in."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        return value


# JSONB on PostgreSQL (compact, indexable), JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")
