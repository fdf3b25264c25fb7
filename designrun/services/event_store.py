"""Storing run events: the ingestion hot path, shared by every writer of events.

The logic (idempotency keys, per-run sequence numbers, order) is written once in
``store_events``; the three database operations it needs come from a small adapter:

- ``CoreEvents``: SQLAlchemy Core statements built once, on any database.
- ``SqliteEvents``: the same statements as plain SQL on the transaction's own ``sqlite3``
  connection. SQLAlchemy's execution machinery costs about 0.1 ms per statement, as much as
  SQLite's own work for one event, and SQLite holds one writer at a time: every microsecond
  inside the transaction is a microsecond every other writer waits. It writes exactly what the
  column types would (``tests/api/test_runner_events.py`` reads the rows back through the ORM).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy.engine import Connection

from designrun.errors import RunNotFoundError
from designrun.models import Run, RunEvent
from designrun.models.types import utcnow, uuid7

# Idempotency-key lookups go in chunks: SQLite allows a limited number of bound parameters.
KEY_CHUNK = 500

_RUNS: Table = Run.__table__  # type: ignore[assignment]
_EVENTS: Table = RunEvent.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class NewEvent:
    event_type: str
    message: str | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None


class EventRows(Protocol):
    def lock_run(self, run_id: uuid.UUID) -> tuple[str, int]:
        """Lock the run for writing events; its status and last sequence (RunNotFoundError)."""
        ...

    def known_keys(self, run_id: uuid.UUID, keys: Sequence[str]) -> Iterable[tuple[str, Any]]:
        """(key, event id) of the run's stored events with one of ``keys``."""
        ...

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows of (id, run_id, sequence, type, message, metadata, key, created_at)."""
        ...


def store_events(
    store: EventRows, run_id: uuid.UUID, events: Sequence[NewEvent]
) -> tuple[list[uuid.UUID], str]:
    """Lock the run, then store ``events`` after its last sequence; return ids and run status.

    An event whose idempotency key is already stored for the run (or earlier in the same batch)
    is not stored again: its original id is returned.
    """
    status, sequence = store.lock_run(run_id)
    wanted = sorted({e.idempotency_key for e in events if e.idempotency_key is not None})
    known: dict[str, uuid.UUID] = {}
    for start in range(0, len(wanted), KEY_CHUNK):
        for found, event_id in store.known_keys(run_id, wanted[start : start + KEY_CHUNK]):
            known[found] = event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(event_id)
    now = utcnow()
    ids: list[uuid.UUID] = []
    rows: list[tuple[Any, ...]] = []
    for event in events:
        key = event.idempotency_key
        if key is not None and key in known:
            ids.append(known[key])
            continue
        sequence += 1
        event_id = uuid7()
        if key is not None:
            known[key] = event_id
        rows.append(
            (
                event_id,
                run_id,
                sequence,
                event.event_type,
                event.message,
                event.metadata or {},
                key,
                now,
            )
        )
        ids.append(event_id)
    if rows:
        store.insert(rows)
    return ids, status


# --- any database: SQLAlchemy Core ----------------------------------------------------------

_LOCK_RUN = select(_RUNS.c.status).where(_RUNS.c.id == bindparam("run_id")).with_for_update()
_LAST_SEQUENCE = select(func.max(_EVENTS.c.sequence)).where(_EVENTS.c.run_id == bindparam("run_id"))
_KNOWN_KEYS = select(_EVENTS.c.idempotency_key, _EVENTS.c.id).where(
    _EVENTS.c.run_id == bindparam("run_id"),
    _EVENTS.c.idempotency_key.in_(bindparam("keys", expanding=True)),
)
_INSERT = insert(_EVENTS)
_COLUMNS = (
    "id",
    "run_id",
    "sequence",
    "event_type",
    "message",
    "metadata",
    "idempotency_key",
    "created_at",
)


class CoreEvents:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_run(self, run_id: uuid.UUID) -> tuple[str, int]:
        # Lock the run row first, then read its last sequence: on PostgreSQL a MAX computed in
        # the same statement would come from the snapshot taken before waiting for the lock.
        status = self.conn.execute(_LOCK_RUN, {"run_id": run_id}).scalar()
        if status is None:
            raise RunNotFoundError()
        last = self.conn.execute(_LAST_SEQUENCE, {"run_id": run_id}).scalar()
        return str(status), int(last or 0)

    def known_keys(self, run_id: uuid.UUID, keys: Sequence[str]) -> Iterable[tuple[str, Any]]:
        rows = self.conn.execute(_KNOWN_KEYS, {"run_id": run_id, "keys": list(keys)})
        return [(key, event_id) for key, event_id in rows]

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        self.conn.execute(_INSERT, [dict(zip(_COLUMNS, row, strict=True)) for row in rows])


# --- SQLite: the same statements, straight to the driver --------------------------------------

# The column types' SQLite storage: Uuid → 32 hex digits, DateTime → this text, JSON → json.dumps.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
_SQLITE_LOCK = (
    "SELECT status, (SELECT MAX(sequence) FROM run_events WHERE run_id = ?) FROM runs WHERE id = ?"
)
_SQLITE_INSERT = (
    "INSERT INTO run_events (id, run_id, sequence, event_type, message, metadata,"
    " idempotency_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class SqliteEvents:
    def __init__(self, raw: Any) -> None:
        self.raw = raw  # the sqlite3 connection, inside the BEGIN IMMEDIATE transaction

    def lock_run(self, run_id: uuid.UUID) -> tuple[str, int]:
        # The database write lock is already held: one round trip for status and last sequence.
        row = self.raw.execute(_SQLITE_LOCK, (run_id.hex, run_id.hex)).fetchone()
        if row is None:
            raise RunNotFoundError()
        return str(row[0]), int(row[1] or 0)

    def known_keys(self, run_id: uuid.UUID, keys: Sequence[str]) -> Iterable[tuple[str, Any]]:
        marks = ",".join("?" * len(keys))
        # Only '?' placeholders are interpolated; the keys themselves are bound parameters.
        sql = (
            "SELECT idempotency_key, id FROM run_events"  # noqa: S608
            f" WHERE run_id = ? AND idempotency_key IN ({marks})"
        )
        return [
            (key, uuid.UUID(hex_id)) for key, hex_id in self.raw.execute(sql, (run_id.hex, *keys))
        ]

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        self.raw.executemany(
            _SQLITE_INSERT,
            [
                (i.hex, r.hex, seq, kind, msg, json.dumps(meta), key, _sqlite_time(at))
                for i, r, seq, kind, msg, meta, key, at in rows
            ],
        )


def _sqlite_time(value: datetime) -> str:
    return value.strftime(_SQLITE_TIME)


def rows_for(conn: Connection) -> EventRows:
    """The fastest adapter for the transaction's connection."""
    if conn.dialect.name == "sqlite":
        return SqliteEvents(conn.connection.driver_connection)
    return CoreEvents(conn)
