"""Data for bench/ingest.py: schema set-up, users and runs, bulk loads, stored-log checks.

Rows for the read benchmark are written straight into designrun's tables (a million events
through HTTP would take longer than the whole benchmark), in the formats SQLAlchemy uses:
on SQLite ``Uuid`` is 32 hex digits and ``DateTime`` is ``YYYY-MM-DD HH:MM:SS.ffffff`` text; on
PostgreSQL they are native ``uuid`` and ``timestamp`` (loaded with COPY). Ids are time-ordered
(UUIDv7, as the app makes them) and timestamps naive UTC.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from harness import ROOT, VENV_BIN


@dataclass(frozen=True)
class Database:
    """One benchmark database: ``url`` is designrun's DATABASE_URL."""

    kind: str  # "sqlite" or "postgresql"
    url: str

    @property
    def sqlite_path(self) -> str:
        return self.url.removeprefix("sqlite:///")

    def connect(self) -> Any:
        """A DB-API connection (sqlite3 in autocommit mode, or psycopg)."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.sqlite_path, isolation_level=None, timeout=60)
            conn.execute("PRAGMA busy_timeout=60000")
            return conn
        import psycopg

        return psycopg.connect(self.url)

    def uuid_param(self, value: uuid.UUID) -> Any:
        return value.hex if self.kind == "sqlite" else value


def migrate(db: Database, env: dict[str, str], root: Path = ROOT) -> None:
    """``flask --app designrun db upgrade`` against ``db``, with the designrun found in ``root``."""
    proc = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "designrun", "db", "upgrade"],
        cwd=root,
        env={**env, "DATABASE_URL": db.url},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"db upgrade failed:\n{proc.stdout}\n{proc.stderr}")


def uuid7_at(ms: int) -> uuid.UUID:
    """A version-7 UUID for Unix time ``ms`` (time-ordered, like designrun's own ids)."""
    rand = random.getrandbits(74)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 62) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


# --- users and runs through the HTTP API --------------------------------------------------------


@dataclass
class User:
    token: str
    account_id: uuid.UUID


def sign_up(base_url: str, email: str) -> User:
    """A new user through POST /api/auth/sign-up/email; its session token and account id."""
    resp = requests.post(
        f"{base_url}/api/auth/sign-up/email",
        json={"email": email, "password": "bench-password-1", "name": "bench"},
        timeout=30,
    )
    resp.raise_for_status()
    body = resp.json()
    return User(token=body["token"], account_id=uuid.UUID(body["user"]["accountId"]))


def create_runs(base_url: str, user: User, count: int) -> list[uuid.UUID]:
    """``count`` runs through POST /api/design/runs (they stay queued: no runner backend)."""
    ids = []
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {user.token}"
        for i in range(count):
            resp = http.post(
                f"{base_url}/api/design/runs", json={"prompt": f"bench {i}"}, timeout=30
            )
            resp.raise_for_status()
            ids.append(uuid.UUID(resp.json()["run"]["id"]))
    return ids


# --- bulk loading for the read benchmark ---------------------------------------------------------


@dataclass
class ReadSet:
    """Where the read benchmark looks: one account, one big run."""

    user: User
    target_run: uuid.UUID
    target_events: int = 0
    account_runs: int = 0
    total_events: int = 0
    other_account: uuid.UUID | None = None
    runs_by_account: dict[uuid.UUID, int] = field(default_factory=dict)


_EVENT_COLUMNS = (
    "id",
    "run_id",
    "sequence",
    "event_type",
    "message",
    "metadata",
    "idempotency_key",
    "created_at",
)
_RUN_COLUMNS = (
    "id",
    "account_id",
    "prompt",
    "config",
    "status",
    "progress",
    "error",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
)


def _ts(db: Database, value: datetime) -> Any:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if db.kind == "sqlite" else value


def _run_rows(
    db: Database, account_id: uuid.UUID, ids: Sequence[uuid.UUID], newest: datetime
) -> Iterator[tuple[Any, ...]]:
    """Runs created one second apart going back from ``newest``, three in four completed."""
    for i, run_id in enumerate(ids):
        created = newest - timedelta(seconds=i)
        done = i % 4 != 0
        yield (
            db.uuid_param(run_id),
            db.uuid_param(account_id),
            f"bulk run {i}",
            "{}",
            "completed" if done else "running",
            1.0 if done else 0.5,
            None,
            _ts(db, created),
            _ts(db, created),
            _ts(db, created),
            _ts(db, created) if done else None,
        )


def _event_rows(
    db: Database, run_id: uuid.UUID, first_seq: int, count: int, start: datetime
) -> Iterator[tuple[Any, ...]]:
    ms = int(start.replace(tzinfo=UTC).timestamp() * 1000)
    run_param = db.uuid_param(run_id)
    stamp = _ts(db, start)
    for seq in range(first_seq, first_seq + count):
        yield (
            db.uuid_param(uuid7_at(ms + seq // 64)),
            run_param,
            seq,
            "log",
            f"step {seq}: bulk loaded line of a simulated runner",
            json.dumps({"step": seq}),
            f"bulk-{seq}",
            stamp,
        )


def _insert(db: Database, conn: Any, table: str, columns: Sequence[str], rows: Any) -> None:
    if db.kind == "sqlite":
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 - constants
        conn.executemany(sql, rows)
        return
    cols = ", ".join(f'"{c}"' for c in columns)
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _begin(db: Database, conn: Any) -> None:
    if db.kind == "sqlite":
        conn.execute("PRAGMA cache_size=-256000")
        conn.execute("BEGIN IMMEDIATE")


def _commit(db: Database, conn: Any) -> None:
    if db.kind == "sqlite":
        conn.execute("COMMIT")
        # Fold the WAL back into the database file: a huge WAL would slow every reader after.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        conn.commit()
        conn.execute("ANALYZE")  # what autovacuum would do within a minute of such a load
        conn.commit()


def load_small(db: Database, user: User, runs: int, events: int) -> ReadSet:
    """The small state: ``runs`` runs of the user's account, ``events`` events in the newest."""
    now = datetime.now(UTC).replace(tzinfo=None)
    ms = int(time.time() * 1000)
    ids = [uuid7_at(ms - i) for i in range(runs)]
    conn = db.connect()
    try:
        _begin(db, conn)
        _insert(db, conn, "runs", _RUN_COLUMNS, _run_rows(db, user.account_id, ids, now))
        _insert(db, conn, "run_events", _EVENT_COLUMNS, _event_rows(db, ids[0], 1, events, now))
        _commit(db, conn)
    finally:
        conn.close()
    return ReadSet(
        user=user, target_run=ids[0], target_events=events, account_runs=runs, total_events=events
    )


def load_large(db: Database, read_set: ReadSet, total_events: int, target_share: float) -> float:
    """Grow the small state to ``total_events`` stored events; returns the seconds it took.

    The target run grows to ``target_share`` of them. The rest are spread over many older runs
    (one per 80 events), half of the user's account and half of another account, so list-runs
    pages through an account with thousands of runs in a table holding twice as many.
    """
    started = time.monotonic()
    extra_target = int(total_events * target_share) - read_set.target_events
    spread = total_events - read_set.total_events - extra_target
    per_run = 80
    run_count = max(2, spread // per_run)
    other_account = uuid7_at(int(time.time() * 1000))
    oldest = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)
    ms = int(oldest.replace(tzinfo=UTC).timestamp() * 1000)
    mine = [uuid7_at(ms - 2 * i) for i in range(run_count // 2)]
    theirs = [uuid7_at(ms - 2 * i - 1) for i in range(run_count - len(mine))]
    conn = db.connect()
    try:
        _begin(db, conn)
        conn.execute(
            "INSERT INTO accounts (id, name, created_at) VALUES (" + _marks(db, 3) + ")",  # noqa: S608
            (db.uuid_param(other_account), "bench other", _ts(db, oldest)),
        )
        _insert(
            db, conn, "runs", _RUN_COLUMNS, _run_rows(db, read_set.user.account_id, mine, oldest)
        )
        _insert(db, conn, "runs", _RUN_COLUMNS, _run_rows(db, other_account, theirs, oldest))
        _insert(
            db,
            conn,
            "run_events",
            _EVENT_COLUMNS,
            _event_rows(db, read_set.target_run, read_set.target_events + 1, extra_target, oldest),
        )
        left = spread
        for i, run_id in enumerate(mine + theirs):
            count = left if i == run_count - 1 else min(per_run, left)
            _insert(
                db, conn, "run_events", _EVENT_COLUMNS, _event_rows(db, run_id, 1, count, oldest)
            )
            left -= count
        _commit(db, conn)
    finally:
        conn.close()
    read_set.target_events += extra_target
    read_set.account_runs += len(mine)
    read_set.total_events = total_events
    read_set.other_account = other_account
    return time.monotonic() - started


def _marks(db: Database, n: int) -> str:
    return ", ".join(["?" if db.kind == "sqlite" else "%s"] * n)


def count_events(db: Database) -> int:
    conn = db.connect()
    try:
        return int(conn.execute("SELECT COUNT(*) FROM run_events").fetchone()[0])
    finally:
        conn.close()


# --- stored-log checks (exactly once, in order) --------------------------------------------------


@dataclass
class LogCheck:
    """The outcome of checking the stored logs of some runs."""

    runs: int = 0
    stored: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _key_order(key: str) -> tuple[int, ...]:
    """``<prefix>-<thread>-<request>[-<index>]`` → (request, index): the order a runner sent."""
    return tuple(int(part) for part in key.split("-")[2:])


def check_logs(db: Database, run_ids: Sequence[str], ceiling: bool) -> LogCheck:
    """Check the logs wrk wrote: per run, sequences 1..n, keys unique and in sending order.

    Each wrk thread is one runner sending sequentially, so its keys must be stored in the order
    of their request counter (and batch index). ``ceiling`` reads the ceiling app's table.
    """
    if ceiling:
        query = (
            "SELECT seq, idempotency_key FROM events WHERE run_id = "  # noqa: S608 - placeholders
            + _marks(db, 1)
            + " ORDER BY seq"
        )
    else:
        query = (
            "SELECT sequence, idempotency_key FROM run_events WHERE run_id = "  # noqa: S608
            + _marks(db, 1)
            + " ORDER BY sequence"
        )
    check = LogCheck()
    conn = db.connect()
    try:
        for run in run_ids:
            param = run if ceiling else db.uuid_param(uuid.UUID(run))
            rows = conn.execute(query, (param,)).fetchall()
            check.runs += 1
            check.stored += len(rows)
            _check_run(run, rows, check)
    finally:
        conn.close()
    return check


def _check_run(run: str, rows: Sequence[tuple[int, str]], check: LogCheck) -> None:
    seqs = [int(r[0]) for r in rows]
    if seqs != list(range(1, len(rows) + 1)):
        check.problems.append(f"run {run}: sequences are not 1..{len(rows)}")
    keys = [r[1] for r in rows]
    check.duplicated += len(keys) - len(set(keys))
    if len(set(keys)) != len(keys):
        check.problems.append(f"run {run}: {len(keys) - len(set(keys))} duplicated keys")
    order = [_key_order(k) for k in keys]
    if order != sorted(order):
        check.problems.append(f"run {run}: events stored out of sending order")


def write_runs_file(path: Path, runs: Sequence[tuple[str, str]]) -> Path:
    """The WRK_RUNS_FILE: one "<runId> <token>" line per runner."""
    path.write_text("".join(f"{run} {token}\n" for run, token in runs))
    return path
