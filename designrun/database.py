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
Threads of one process first queue on a mutex (``SqliteWriter``), so a process holds one
descriptor of that file whatever its number of threads.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_write_intent: ContextVar[bool] = ContextVar("designrun_write_intent", default=False)


def sqlite_synchronous() -> str:
    """DESIGNRUN_SQLITE_SYNCHRONOUS (NORMAL unless set to OFF, FULL or EXTRA)."""
    synchronous = os.environ.get("DESIGNRUN_SQLITE_SYNCHRONOUS", "NORMAL").upper()
    return synchronous if synchronous in {"OFF", "NORMAL", "FULL", "EXTRA"} else "NORMAL"


def configure_sqlite(dbapi_connection: sqlite3.Connection) -> None:
    """The pragmas every SQLite connection gets (the module docstring says why)."""
    # Transactions are begun explicitly (the "begin" event below, or the event fast path):
    # pysqlite's own implicit BEGIN is deferred and only precedes DML.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA synchronous={sqlite_synchronous()}")
    cursor.execute("PRAGMA cache_size=-32000")
    cursor.close()


@event.listens_for(Engine, "connect")
def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        configure_sqlite(dbapi_connection)


@event.listens_for(Engine, "begin")
def _on_begin(conn: Connection) -> None:
    if conn.dialect.name != "sqlite":
        return
    # Straight to the driver: this runs for every transaction, SQLAlchemy's execution
    # machinery would cost more than SQLite's BEGIN itself.
    conn.connection.driver_connection.execute(  # type: ignore[union-attr]
        "BEGIN IMMEDIATE" if _write_intent.get() else "BEGIN"
    )


class SqliteWriter:
    """This process's writer side of one SQLite file: the in-process lock and the queue file.

    Threads of a process take ``lock`` (a mutex), then the process takes ``flock()`` on
    its one descriptor of ``<db>.writelock``: one open file description per process and
    database, whatever the number of threads (a descriptor per thread leaked one per thread
    that ever wrote). ``conn`` is the event fast path's own connection
    (services/event_store.py), used only by the holder of ``lock``.
    """

    # Commits between two checkpoints of the WAL into the database file (see ``committed``).
    CHECKPOINT_EVERY = 100

    def __init__(self, database: str) -> None:
        self.database = database
        self.lock = threading.RLock()
        self.depth = 0  # nesting of ``locked`` by the thread that holds ``lock``
        self.fd = os.open(database + ".writelock", os.O_RDWR | os.O_CREAT, 0o600)
        self.conn: sqlite3.Connection | None = None
        self.extras: dict[str, Any] = {}  # the event store's group-commit state
        self.commits = 0
        self.checkpoint_wanted = threading.Event()
        self.checkpointer: threading.Thread | None = None

    def connection(self) -> sqlite3.Connection:
        """The fast path's connection (opened on first use, with the engine's pragmas).

        Its commits never checkpoint the WAL themselves (``wal_autocheckpoint=0``): a commit
        that crosses the threshold would copy pages and fsync while holding the writer lock,
        and every other writer would wait for the disk. ``committed`` hands that work to a
        thread that checkpoints outside the lock (SQLite lets writers go on meanwhile).
        """
        if self.conn is None:
            conn = sqlite3.connect(self.database, timeout=30, check_same_thread=False)
            configure_sqlite(conn)
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self.conn = conn
        return self.conn

    def committed(self) -> None:
        """Count a fast-path commit; every CHECKPOINT_EVERY, wake the checkpointer thread."""
        self.commits += 1
        if self.commits % self.CHECKPOINT_EVERY:
            return
        if self.checkpointer is None or not self.checkpointer.is_alive():
            self.checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="dr-sqlite-checkpoint", daemon=True
            )
            self.checkpointer.start()
        self.checkpoint_wanted.set()

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(self.database, timeout=30, check_same_thread=False)
        configure_sqlite(conn)
        while True:
            self.checkpoint_wanted.wait()
            self.checkpoint_wanted.clear()
            try:
                # PASSIVE: copy what no reader still needs, never wait for readers or writers.
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed: %s", exc)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this database's write lock: the thread's, then the process's turn.

        Re-entrant, so that a write nested in another one on the same thread fails in SQLite
        (as it always did) instead of hanging on its own mutex; only the outermost holder
        takes and releases the file lock.
        """
        with self.lock:
            self.depth += 1
            try:
                if self.depth == 1:
                    fcntl.flock(self.fd, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    if self.depth == 1:
                        fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                self.depth -= 1

    def discard(self) -> None:
        """Close what this object holds (an inherited copy after fork, or a test's cleanup)."""
        os.close(self.fd)
        if self.conn is not None:
            self.conn.close()
            self.conn = None


_writers: dict[str, SqliteWriter] = {}
_writers_pid = os.getpid()
_writers_lock = threading.Lock()


def sqlite_database(engine: Engine) -> str | None:
    """The SQLite file of ``engine``, or None (not SQLite, in memory, or a URI filename)."""
    return sqlite_file(engine.url)


def sqlite_file(url: URL) -> str | None:
    """The SQLite file a database URL names, or None (not SQLite, in memory, or a URI)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def sqlite_writer(engine: Engine) -> SqliteWriter | None:
    """This process's SqliteWriter for ``engine``'s file, or None (not a SQLite file)."""
    global _writers_pid
    database = sqlite_database(engine)
    if database is None:
        return None
    writer = _writers.get(database)
    if writer is not None and _writers_pid == os.getpid():
        return writer
    with _writers_lock:
        if _writers_pid != os.getpid():
            # A forked child: the parent's descriptor shares the parent's open file description
            # (flock would not exclude the two), and its connection must not cross a fork.
            for inherited in _writers.values():
                os.close(inherited.fd)
            _writers.clear()
            _writers_pid = os.getpid()
        writer = _writers.get(database)
        if writer is None:
            try:
                writer = SqliteWriter(database)
            except OSError:
                return None  # no folder for the database either: SQLite will say so (503)
            _writers[database] = writer
        return writer


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
    writer = sqlite_writer(session.get_bind().engine)
    with writer.locked() if writer is not None else nullcontext():
        token = _write_intent.set(True)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            _write_intent.reset(token)


class PgConnections:
    """This process's plain psycopg connections for the event fast path (one per thread in use).

    The hot path skips SQLAlchemy's pool: its ``pool_pre_ping`` costs a round trip per
    checkout. A connection the server dropped is noticed by the statement that fails, which
    services/event_store.py retries once on a new connection when nothing was committed.
    """

    MAX_IDLE = 8

    def __init__(self, conninfo: str, connect_timeout: int) -> None:
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self.idle: list[Any] = []
        self.lock = threading.Lock()

    def take(self) -> tuple[Any, bool]:
        """A connection and whether it was idle in the pool (False: connected just now)."""
        with self.lock:
            if self.idle:
                return self.idle.pop(), True
        return self.connect(), False

    def connect(self) -> Any:
        import psycopg

        # prepare_threshold=0: the hot path's few statements are prepared on first use.
        return psycopg.connect(
            self.conninfo, connect_timeout=self.connect_timeout, prepare_threshold=0
        )

    def give_back(self, conn: Any) -> None:
        """Return a healthy connection (idle, no transaction open); close it past MAX_IDLE."""
        with self.lock:
            if len(self.idle) < self.MAX_IDLE:
                self.idle.append(conn)
                return
        conn.close()

    def close_idle(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


_pg: dict[str, PgConnections] = {}
_pg_pid = os.getpid()


@atexit.register
def close_pg_connections() -> None:
    """Close this process's idle fast-path connections: at exit, a clean goodbye to the server
    (and no "connection deleted while still open" warnings from the garbage collector)."""
    if _pg_pid == os.getpid():
        for pool in list(_pg.values()):
            pool.close_idle()


def pg_connections(engine: Engine) -> PgConnections | None:
    """This process's PgConnections for ``engine``, or None (not PostgreSQL through psycopg)."""
    global _pg_pid
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return None
    key = str(engine.url)
    pool = _pg.get(key)
    if pool is not None and _pg_pid == os.getpid():
        return pool
    with _writers_lock:
        if _pg_pid != os.getpid():
            _pg.clear()  # a forked child never uses its parent's sockets
            _pg_pid = os.getpid()
        pool = _pg.get(key)
        if pool is None:
            url = engine.url.set(drivername="postgresql")
            timeout = int(url.query.get("connect_timeout", 5))  # type: ignore[arg-type]
            pool = PgConnections(url.render_as_string(hide_password=False), timeout)
            _pg[key] = pool
        return pool
