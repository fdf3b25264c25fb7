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
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy.engine import Connection

from designrun.database import (
    PgConnections,
    SqliteWriter,
    pg_connections,
    sqlite_writer,
    write_transaction,
)
from designrun.errors import DatabaseUnavailableError, RunNotFoundError
from designrun.extensions import db
from designrun.models import Run, RunEvent
from designrun.models.types import utcnow, uuid7, uuid7s
from designrun.services import event_writer

log = logging.getLogger(__name__)

# lastHeartbeatAt is written at most this often per run: every runner request is a heartbeat,
# and an extra write per event batch would cost the ingestion path its speed.
HEARTBEAT_RESOLUTION = timedelta(seconds=1)

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


# --- the hot path: append(), per database --------------------------------------------------------


def append(run_id: uuid.UUID, events: Sequence[NewEvent]) -> tuple[list[uuid.UUID], str]:
    """Store ``events`` for the run in one transaction; their ids and the run's status.

    The runner API's hot path. On a SQLite file, concurrent requests of a process are
    committed together (``_GroupCommit``); on PostgreSQL plain psycopg statements run on this
    process's own connections; anything else goes through SQLAlchemy. Either way no answer
    leaves before its events are committed (to the configured ``synchronous`` level), and a
    request's events are stored all or none.
    """
    engine = db.engine
    writer = sqlite_writer(engine)
    if writer is not None:
        prepared = _prepare(events)
        # The host's writer process when there is one (event_writer.py), else this process's.
        done = event_writer.append(writer.database, run_id, prepared)
        if done is not None:
            return done
        return _GroupCommit.of(writer).append(_Job(run_id, prepared))
    pool = pg_connections(engine)
    if pool is not None:
        return _pg_append(pool, run_id, _prepare(events))
    with write_transaction() as session:
        return store_events(rows_for(session.connection()), run_id, events)


_Prepared = tuple[uuid.UUID, str, "str | None", str, "str | None"]  # id, type, msg, meta, key


def _prepare(events: Sequence[NewEvent]) -> list[_Prepared]:
    """What can be computed before the write lock: ids and serialised metadata."""
    return [
        (event_id, e.event_type, e.message, json.dumps(e.metadata or {}), e.idempotency_key)
        for event_id, e in zip(uuid7s(len(events)), events, strict=True)
    ]


def _assign(
    prepared: list[_Prepared], known: dict[str, uuid.UUID], sequence: int
) -> tuple[list[uuid.UUID], list[tuple[uuid.UUID, int, _Prepared]]]:
    """``store_events``'s rule on prepared events: known keys keep their id, others are new."""
    ids: list[uuid.UUID] = []
    new: list[tuple[uuid.UUID, int, _Prepared]] = []
    for event in prepared:
        key = event[4]
        if key is not None and key in known:
            ids.append(known[key])
            continue
        sequence += 1
        if key is not None:
            known[key] = event[0]
        new.append((event[0], sequence, event))
        ids.append(event[0])
    return ids, new


class _Job:
    """One request's events waiting for a group commit, then its outcome."""

    __slots__ = ("done", "error", "ids", "prepared", "run_id", "status")

    def __init__(self, run_id: uuid.UUID, prepared: list[_Prepared]) -> None:
        self.run_id = run_id
        self.prepared = prepared
        self.done = False
        self.ids: list[uuid.UUID] = []
        self.status = ""
        self.error: BaseException | None = None


class _GroupCommit:
    """Commit the concurrent requests of one process in one SQLite transaction.

    The first request to arrive while no commit is under way becomes the leader: it takes
    everything queued so far, takes the write lock (SqliteWriter: mutex, then flock), stores
    each request's events in turn, commits once and wakes the others with their outcome.
    Requests that arrive meanwhile queue for the next leader. SQLite has one writer at a time,
    so every BEGIN/COMMIT and lock hand-over saved is throughput; under sync workers (one
    request per process at a time) a group is just one request. A request that fails alone
    (unknown run) writes nothing and does not disturb the others; a failed COMMIT fails them
    all, and none of them was stored.
    """

    def __init__(self, writer: SqliteWriter) -> None:
        self.writer = writer
        self.cond = threading.Condition()
        self.queue: list[_Job] = []
        self.leading = False

    @classmethod
    def of(cls, writer: SqliteWriter) -> _GroupCommit:
        group = writer.extras.get("group")
        if group is None:
            group = writer.extras.setdefault("group", cls(writer))
        return group  # type: ignore[no-any-return]

    def append(self, job: _Job) -> tuple[list[uuid.UUID], str]:
        with self.cond:
            self.queue.append(job)
            while not job.done and self.leading:
                self.cond.wait()
            lead = not job.done
            if lead:
                self.leading = True
        if lead:
            try:
                self._commit()
            finally:
                with self.cond:
                    self.leading = False
                    self.cond.notify_all()
        if job.error is not None:
            if isinstance(job.error, sqlite3.OperationalError | sqlite3.InterfaceError):
                raise _unavailable(job.error) from job.error
            raise job.error
        return job.ids, job.status

    def _commit(self) -> None:
        """Lead one group: take the lock, then everything queued by then (ours included)."""
        batch: list[_Job] = []
        try:
            with self.writer.locked():
                # Taken only now: requests that came while we waited for the lock join in.
                with self.cond:
                    batch, self.queue = self.queue, []
                commit_jobs(self.writer, batch)
        except BaseException as exc:
            if not batch:  # the lock itself failed: what was queued fails with it
                with self.cond:
                    batch, self.queue = self.queue, []
            for job in batch:
                job.error = exc  # every request of the group answers it (ours in append)
            if not isinstance(exc, Exception):
                raise  # SystemExit (gunicorn's worker timeout), KeyboardInterrupt
        finally:
            for job in batch:
                job.done = True


def commit_jobs(writer: SqliteWriter, batch: list[_Job]) -> None:
    """Store ``batch`` in one transaction; the caller holds ``writer.locked()``.

    Each job gets its ids and run status, or its own error when it fails alone (unknown run:
    nothing of it was written). A failed transaction raises, and none of the batch is stored.
    Shared by the in-process group commit and the host's event writer (event_writer.py).
    """
    conn = writer.connection()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                try:
                    job.ids, job.status = _store_sqlite(conn, job)
                except RunNotFoundError as exc:  # raised before anything is written
                    job.error = exc
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error:
        if writer.conn is not None:
            writer.conn.close()  # reopened by the next writer (the file may have moved)
            writer.conn = None
        raise
    writer.committed()


# Status, last sequence, last heartbeat and (for a single keyed event) the key's stored id.
_SQLITE_LOCK_KEY = (
    "SELECT status, (SELECT MAX(sequence) FROM run_events WHERE run_id = ?1), last_heartbeat_at,"
    " (SELECT id FROM run_events WHERE run_id = ?1 AND idempotency_key = ?2)"
    " FROM runs WHERE id = ?1"
)
_SQLITE_HEARTBEAT = "UPDATE runs SET last_heartbeat_at = ? WHERE id = ?"


def _store_sqlite(conn: sqlite3.Connection, job: _Job) -> tuple[list[uuid.UUID], str]:
    """``store_events`` on prepared events, inside the group's transaction.

    Also records the runner's heartbeat (lastHeartbeatAt) when it is older than the
    resolution: an event post is a runner callback (api/runner.py's guard leaves it to us).
    """
    run = job.run_id.hex
    prepared = job.prepared
    single_key = prepared[0][4] if len(prepared) == 1 else None
    # The common case, a single keyed event: everything in one statement.
    row = conn.execute(_SQLITE_LOCK_KEY, (run, single_key)).fetchone()
    if row is None:
        raise RunNotFoundError()
    known: dict[str, uuid.UUID] = {}
    if single_key is not None:
        if row[3] is not None:
            known[single_key] = uuid.UUID(row[3])
    else:
        wanted = sorted({e[4] for e in prepared if e[4] is not None})
        reader = SqliteEvents(conn)
        for start in range(0, len(wanted), KEY_CHUNK):
            known.update(reader.known_keys(job.run_id, wanted[start : start + KEY_CHUNK]))
    ids, new = _assign(prepared, known, int(row[1] or 0))
    now = utcnow()
    if new:
        at = _sqlite_time(now)
        conn.executemany(
            _SQLITE_INSERT,
            [(i.hex, run, seq, e[1], e[2], e[3], e[4], at) for i, seq, e in new],
        )
    # Same text format as the column's: the strings compare as the times do.
    if row[2] is None or row[2] < _sqlite_time(now - HEARTBEAT_RESOLUTION):
        conn.execute(_SQLITE_HEARTBEAT, (_sqlite_time(now), run))
    return ids, str(row[0])


# --- PostgreSQL: plain psycopg, prepared statements, four round trips ----------------------------

_PG_LOCK = "SELECT status, last_heartbeat_at FROM runs WHERE id = %s FOR UPDATE"
# After the lock (a statement of its own: its snapshot is taken once the lock is granted).
_PG_LAST_AND_KEYS = (
    "SELECT NULL, NULL, max(sequence) FROM run_events WHERE run_id = %(run)s"
    " UNION ALL SELECT idempotency_key, id, NULL FROM run_events"
    " WHERE run_id = %(run)s AND idempotency_key = ANY(%(keys)s)"
)
_PG_INSERT = (
    "INSERT INTO run_events (id, run_id, sequence, event_type, message, metadata,"
    " idempotency_key, created_at) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s)"
)
_PG_INSERT_MANY = (
    "INSERT INTO run_events (id, run_id, sequence, event_type, message, metadata,"
    " idempotency_key, created_at)"
    " SELECT i, %s, s, t, m, d::jsonb, k, %s FROM unnest("
    "%s::uuid[], %s::int8[], %s::text[], %s::text[], %s::text[], %s::text[]) AS e(i, s, t, m, d, k)"
)
_PG_HEARTBEAT = "UPDATE runs SET last_heartbeat_at = %s WHERE id = %s"


def _pg_append(
    pool: PgConnections, run_id: uuid.UUID, prepared: list[_Prepared]
) -> tuple[list[uuid.UUID], str]:
    import psycopg

    for attempt in (1, 2):
        try:
            conn, pooled = pool.take()
        except psycopg.OperationalError as exc:
            raise _unavailable(exc) from exc
        locked: list[bool] = []  # set once the lock statement answered: writes may follow
        try:
            ids, status = _pg_store(conn, run_id, prepared, locked)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            conn.close()
            # A connection that died while idle in the pool (server restart) fails on its
            # first round trip, before anything was written: one more try on a new one is safe.
            if attempt == 1 and pooled and not locked:
                continue
            raise _unavailable(exc) from exc
        except BaseException:
            conn.close()  # whatever state it is in, it is not reused
            raise
        pool.give_back(conn)
        return ids, status
    raise AssertionError("unreachable")  # pragma: no cover


def _pg_store(
    conn: Any, run_id: uuid.UUID, prepared: list[_Prepared], locked: list[bool]
) -> tuple[list[uuid.UUID], str]:
    """One transaction: lock the run row; its last sequence and keys; insert; commit.

    Plain statements, prepared by the server on first use (PgConnections): the lock, one read
    for the last sequence and the known keys, one INSERT (a batch as arrays), the COMMIT.
    """
    wanted = sorted({e[4] for e in prepared if e[4] is not None})
    with conn.cursor() as cur:
        cur.execute(_PG_LOCK, (run_id,))
        row = cur.fetchone()
        locked.append(True)
        if row is None:
            conn.rollback()
            raise RunNotFoundError()
        cur.execute(_PG_LAST_AND_KEYS, {"run": run_id, "keys": wanted})
        known: dict[str, uuid.UUID] = {}
        sequence = 0
        for key, event_id, last in cur.fetchall():
            if key is None:
                sequence = last or 0
            else:
                known[key] = event_id
        ids, new = _assign(prepared, known, int(sequence))
        now = utcnow()
        if len(new) == 1:
            i, seq, e = new[0]
            cur.execute(_PG_INSERT, (i, run_id, seq, e[1], e[2], e[3], e[4], now))
        elif new:
            columns = list(
                zip(*((i, seq, e[1], e[2], e[3], e[4]) for i, seq, e in new), strict=True)
            )
            cur.execute(_PG_INSERT_MANY, (run_id, now, *map(list, columns)))
        if row[1] is None or row[1] < now - HEARTBEAT_RESOLUTION:
            cur.execute(_PG_HEARTBEAT, (now, run_id))
    conn.commit()
    return ids, str(row[0])


def _unavailable(exc: BaseException) -> DatabaseUnavailableError:
    log.warning("database unavailable: %s", type(exc).__name__)
    return DatabaseUnavailableError("the database is unavailable; try again shortly")
