"""Engine set-up shared by SQLite and PostgreSQL, and the write-transaction helper.

SQLite is used by several gunicorn worker processes at once, so every connection gets:
- WAL: readers never block the writer and the writer never blocks readers.
- busy_timeout: a writer waits for the lock instead of failing with "database is locked".
- foreign_keys=ON: SQLite ignores REFERENCES ... ON DELETE CASCADE without it.
- synchronous=NORMAL: in WAL mode this is ~4x faster per commit than FULL and can lose only
  the last commits on a power cut (never corrupts). A deliberate trade for a log-ingesting
  service; set DESIGNRUN_SQLITE_SYNCHRONOUS=FULL to trade back.
- a larger page cache (the default 2 MiB costs bulk inserts dearly).

Write transactions start with BEGIN IMMEDIATE (``write_transaction``): a deferred BEGIN that
reads first and writes later fails at once with "database is locked" when another writer got
in between, whatever the busy timeout (bench/README.md). Read-only requests keep a
deferred BEGIN so they never queue behind writers.

Before BEGIN IMMEDIATE, writers also queue on a blocking ``flock()`` of ``<db>.writelock``:
waiting in the kernel's queue wakes the next writer as soon as the lock is free, where SQLite's
busy handler sleeps and polls (its sleeps made p99 latency several times worse under load).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

_write_intent: ContextVar[bool] = ContextVar("designrun_write_intent", default=False)


@event.listens_for(Engine, "connect")
def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Hand transaction control to SQLAlchemy's "begin" event below (pysqlite's own
    # implicit BEGIN is deferred and only precedes DML).
    dbapi_connection.isolation_level = None
    synchronous = os.environ.get("DESIGNRUN_SQLITE_SYNCHRONOUS", "NORMAL").upper()
    if synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        synchronous = "NORMAL"
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA cache_size=-32000")
    cursor.close()


@event.listens_for(Engine, "begin")
def _on_begin(conn: Connection) -> None:
    if conn.dialect.name != "sqlite":
        return
    # Straight to the driver: this runs for every transaction, SQLAlchemy's execution
    # machinery would cost more than SQLite's BEGIN itself.
    conn.connection.driver_connection.execute(  # type: ignore[union-attr]
        "BEGIN IMMEDIATE" if _write_intent.get() else "BEGIN"
    )


_lock_files = threading.local()


def _writer_lock_fd(session: Session) -> int | None:
    """This thread's descriptor of the SQLite writer-queue file, or None (not a SQLite file)."""
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        return None
    database = bind.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    cache: dict[str, int] = getattr(_lock_files, "fds", None) or {}
    _lock_files.fds = cache
    fd = cache.get(database)
    if fd is None:
        # One open file description per thread: flock() then also orders threads of a process.
        try:
            fd = os.open(database + ".writelock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None  # no folder for the database either: SQLite will say so (503)
        cache[database] = fd
    return fd


@contextmanager
def write_transaction() -> Iterator[Session]:
    """Run the block in one write transaction that takes SQLite's write lock up front.

    Ends any read transaction the request already had (a guard's session lookup), so the write
    lock is taken at BEGIN, commits at the end, rolls back on any exception. On PostgreSQL
    this is an ordinary transaction.
    """
    from designrun.extensions import db

    session: Session = db.session()
    if session.in_transaction():
        session.commit()
    lock_fd = _writer_lock_fd(session)
    if lock_fd is not None:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    token = _write_intent.set(True)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        _write_intent.reset(token)
        if lock_fd is not None:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
