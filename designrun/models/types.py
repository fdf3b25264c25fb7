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
    return uuid7s(1)[0]


def uuid7s(count: int) -> list[uuid.UUID]:
    """``count`` version-7 UUIDs with one call for randomness (a batch of events needs many)."""
    ms = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    stamp = (ms << 80) | (0x7 << 76) | (0b10 << 62)  # time, version, variant
    noise = os.urandom(10 * count)
    ids = []
    for start in range(0, 10 * count, 10):
        rand = int.from_bytes(noise[start : start + 10], "big")
        # rand_a (12 bits) above the variant, rand_b (62 bits) below it
        ids.append(uuid.UUID(int=stamp | (((rand >> 62) & 0xFFF) << 64) | (rand & ((1 << 62) - 1))))
    return ids


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
