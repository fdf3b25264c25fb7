"""The storage ceiling: the least work a correct event ingestion must do per request.

A deliberately minimal Flask app answering ``POST /api/runner/runs/<run_id>/events`` (one event,
or ``{"events": [...]}``) with the database driver and nothing else: no auth, no ORM, no
validation library. bench/ingest.py serves it side by side with designrun, under the same
gunicorn.conf.py, worker class, worker count and load driver, so the ratio between the two is
what designrun's own machinery costs.

CEILING_MODE (environment):
  plain             parse the JSON body, answer {"ok": true}             (the framework ceiling)
  sqlite_seq        BEGIN IMMEDIATE; idempotency-key lookup; next per-run sequence; INSERT;
                    COMMIT; writers wait in SQLite's busy handler (sleep and retry)
  sqlite_seq_flock  the same, writers first queue on a blocking flock() of <db>.writelock
                    (one descriptor per connection), as designrun does: the default ceiling
  pg_seq            the same on PostgreSQL (psycopg 3, per-run advisory lock)
CEILING_DB: the SQLite file (``init_sqlite`` creates the table); CEILING_PG_DSN: PostgreSQL
(``init_pg`` creates the table). CEILING_SYNCHRONOUS: SQLite's synchronous level (NORMAL, like
designrun's default).

Connections are opened lazily, one per thread (after gunicorn forks), and so work under sync
and gthread workers alike. A database error is answered 503 and logged as ``CEILING_ERROR``.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import sys
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, request

MODE = os.environ.get("CEILING_MODE", "sqlite_seq_flock")
DB = os.environ.get("CEILING_DB", "")
PG_DSN = os.environ.get("CEILING_PG_DSN", "")
SYNCHRONOUS = os.environ.get("CEILING_SYNCHRONOUS", "NORMAL")

app = Flask(__name__)
_local = threading.local()

_INSERT = (
    "INSERT INTO events (id, run_id, seq, event_type, message, metadata, created_at,"
    " idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_PG_INSERT = _INSERT.replace("?", "%s")


class _Writer:
    """One thread's SQLite connection and its own descriptor of the writer-queue file."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(DB, isolation_level=None, timeout=30, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.lock_fd = os.open(DB + ".writelock", os.O_RDWR | os.O_CREAT, 0o600)

    def __del__(self) -> None:  # a gthread thread that ends closes its descriptors
        os.close(self.lock_fd)
        self.conn.close()


def _writer() -> _Writer:
    writer = getattr(_local, "writer", None)
    if writer is None:
        writer = _local.writer = _Writer()
    return writer


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rows(run_id: str, events: list[dict[str, Any]], known: dict[str, str], seq: int, now: Any):
    ids, rows = [], []
    for e in events:
        key = e.get("idempotencyKey")
        if key is not None and key in known:
            ids.append(known[key])
            continue
        seq += 1
        eid = str(uuid.uuid4())
        if key is not None:
            known[key] = eid
        meta = json.dumps(e.get("metadata") or {})
        rows.append((eid, run_id, seq, e["eventType"], e.get("message"), meta, now, key))
        ids.append(eid)
    return ids, rows


def _store_sqlite(run_id: str, events: list[dict[str, Any]]) -> list[str]:
    writer = _writer()
    c = writer.conn
    if MODE == "sqlite_seq_flock":
        fcntl.flock(writer.lock_fd, fcntl.LOCK_EX)
    try:
        c.execute("BEGIN IMMEDIATE")
        try:
            wanted = [e["idempotencyKey"] for e in events if e.get("idempotencyKey") is not None]
            known: dict[str, str] = {}
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT idempotency_key, id FROM events WHERE run_id = ? AND idempotency_key IN ({marks})"  # noqa: E501,S608
                known.update(c.execute(sql, [run_id, *chunk]).fetchall())
            seq = c.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            ids, rows = _rows(run_id, events, known, seq, _now())
            if rows:
                c.executemany(_INSERT, rows)
            c.execute("COMMIT")
            return ids
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
    finally:
        if MODE == "sqlite_seq_flock":
            fcntl.flock(writer.lock_fd, fcntl.LOCK_UN)


def _store_pg(run_id: str, events: list[dict[str, Any]]) -> list[str]:
    import psycopg

    c = getattr(_local, "pg", None)
    if c is None:
        c = _local.pg = psycopg.connect(PG_DSN)
    try:
        with c.cursor() as cur:
            # Serialise the writers of one run only (PostgreSQL has no database-wide writer lock).
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (run_id,))
            wanted = [e["idempotencyKey"] for e in events if e.get("idempotencyKey") is not None]
            known: dict[str, str] = {}
            if wanted:
                cur.execute(
                    "SELECT idempotency_key, id FROM events"
                    " WHERE run_id = %s AND idempotency_key = ANY(%s)",
                    (run_id, wanted),
                )
                known = dict(cur.fetchall())
            cur.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = %s", (run_id,))
            row = cur.fetchone()
            seq = row[0] if row else 0
            ids, rows = _rows(run_id, events, known, seq, datetime.now(UTC))
            if rows:
                cur.executemany(_PG_INSERT, rows)
        c.commit()
        return ids
    except BaseException:
        c.rollback()
        raise


@app.post("/api/runner/runs/<run_id>/events")
def post_events(run_id: str) -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return {"ok": False, "error": "body must be a JSON object", "code": "invalid_request"}, 400
    batch = isinstance(body.get("events"), list)
    events = body["events"] if batch else [body]
    for e in events:
        if not isinstance(e, dict) or not isinstance(e.get("eventType"), str):
            return {"ok": False, "error": "eventType is required", "code": "invalid_request"}, 400
    if MODE == "plain":
        return {"ok": True}
    try:
        ids = _store_pg(run_id, events) if MODE == "pg_seq" else _store_sqlite(run_id, events)
    except Exception as exc:  # sqlite3.Error or psycopg.Error: the database is the limit here
        print(f"CEILING_ERROR {exc}", file=sys.stderr, flush=True)
        return {"ok": False, "error": str(exc), "code": "service_unavailable"}, 503
    return {"ok": True, "eventIds": ids} if batch else {"ok": True, "eventId": ids[0]}


SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  id TEXT PRIMARY KEY, run_id TEXT NOT NULL, seq INTEGER NOT NULL, event_type TEXT NOT NULL,
  message TEXT, metadata TEXT, created_at TEXT NOT NULL, idempotency_key TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_events_run_seq ON events (run_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS ux_events_run_key ON events (run_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
"""


def init_sqlite(path: str) -> None:
    """Create the ceiling's SQLite file (WAL) and table."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    conn.close()


def init_pg(dsn: str) -> None:
    """Create the ceiling's PostgreSQL table."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, run_id TEXT NOT NULL,"
            " seq INTEGER NOT NULL, event_type TEXT NOT NULL, message TEXT, metadata TEXT,"
            " created_at TIMESTAMPTZ NOT NULL, idempotency_key TEXT)"
        )
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS ux_events_run_seq ON events (run_id, seq)")
        conn.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS ux_events_run_key"
            " ON events (run_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
        )
