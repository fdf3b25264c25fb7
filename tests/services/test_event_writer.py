"""The host's SQLite event writer (services/event_writer.py) and the workers' side of it.

The writer runs here on a thread of the test process (``served``), on the session's database
file, with its own lock descriptor: exactly what the gunicorn master's writer process does.
Its group semantics are driven deterministically through ``_Writer._commit`` with socket pairs.
The gunicorn-level behaviour (started and stopped with the master, killed mid-commit) is in
tests/test_group_commit.py and tests/test_event_writer_process.py.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from designrun.database import sqlite_database, sqlite_writer
from designrun.errors import DatabaseUnavailableError, RunNotFoundError
from designrun.extensions import db
from designrun.models import RunEvent
from designrun.services import event_store, event_writer
from designrun.services.event_store import NewEvent
from tests.factories import make_run, make_user

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TEST_DATABASE_URL")), reason="the event writer is SQLite's"
)


def _database(app: Any) -> str:
    with app.app_context():
        database = sqlite_database(db.engine)
    assert database is not None
    return database


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    """Forget this process's writer connections (and a failed connect's back-off)."""
    event_writer.forget_clients()
    yield
    event_writer.forget_clients()


class _Served:
    def __init__(self, database: str) -> None:
        self.path = event_writer.socket_path(database)
        assert self.path is not None
        self.writer = event_writer._Writer(database, self.path)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            self.writer.step(0.02)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
        self.writer.close()


@pytest.fixture
def served(app: Any, fresh_clients: None) -> Iterator[_Served]:
    writer = _Served(_database(app))
    try:
        yield writer
    finally:
        writer.stop()


def _append(app: Any, run_id: uuid.UUID, *keys: str) -> tuple[list[uuid.UUID], str]:
    with app.app_context():
        return event_store.append(
            run_id, [NewEvent("log", message=k, metadata={"k": k}, idempotency_key=k) for k in keys]
        )


def _stored(app: Any, run_id: uuid.UUID) -> list[tuple[int, str | None, str | None]]:
    with app.app_context():
        rows = db.session.execute(
            select(RunEvent.sequence, RunEvent.idempotency_key, RunEvent.message)
            .where(RunEvent.run_id == run_id)
            .order_by(RunEvent.sequence)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def _in_process_commits(app: Any) -> int:
    with app.app_context():
        writer = sqlite_writer(db.engine)
    assert writer is not None
    return writer.commits


def test_appends_are_committed_by_the_writer(app, served):
    run = make_run(app, make_user(app)).id
    before, mine = served.writer.writer.commits, _in_process_commits(app)
    ids, status = _append(app, run, "a", "b")
    again, _ = _append(app, run, "b", "c")  # a retried key keeps its id
    assert status == "queued"
    assert again[0] == ids[1]
    assert _stored(app, run) == [(1, "a", "a"), (2, "b", "b"), (3, "c", "c")]
    with app.app_context():
        stored = db.session.execute(select(RunEvent).where(RunEvent.run_id == run)).scalars()
        assert [(e.id, e.metadata_) for e in stored][:2] == [
            (ids[0], {"k": "a"}),
            (ids[1], {"k": "b"}),
        ]
    assert served.writer.writer.commits == before + 2
    assert _in_process_commits(app) == mine  # not one commit of this process's own


def test_an_unknown_run_is_not_found(app, served):
    with pytest.raises(RunNotFoundError):
        _append(app, uuid.uuid4(), "x")


def test_threads_of_a_process_each_get_an_answer(app, served):
    run = make_run(app, make_user(app)).id
    results: dict[int, Any] = {}

    def post(n: int) -> None:
        results[n] = _append(app, run, *(f"t{n}-{i}" for i in range(3)))

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8
    stored = _stored(app, run)
    assert [seq for seq, _, _ in stored] == list(range(1, 25))
    assert sorted(k for _, k, _ in stored) == sorted(
        f"t{n}-{i}" for n in range(8) for i in range(3)
    )
    for n in range(8):  # each request's events are stored together and in its order
        seqs = [seq for seq, k, _ in stored if k is not None and k.startswith(f"t{n}-")]
        assert seqs == list(range(seqs[0], seqs[0] + 3))


def test_without_a_writer_the_process_commits_its_own(app, fresh_clients):
    run = make_run(app, make_user(app)).id
    mine = _in_process_commits(app)
    _append(app, run, "k")
    assert _stored(app, run) == [(1, "k", "k")]
    assert _in_process_commits(app) == mine + 1


def test_writer_turned_off_by_setting(app, served, monkeypatch):
    monkeypatch.setenv("DESIGNRUN_SQLITE_EVENT_WRITER", "0")
    event_writer.forget_clients()
    run = make_run(app, make_user(app)).id
    before = served.writer.writer.commits
    _append(app, run, "k")
    assert served.writer.writer.commits == before
    assert _stored(app, run) == [(1, "k", "k")]


def test_a_restarted_writer_is_reconnected_without_an_error(app, fresh_clients):
    run = make_run(app, make_user(app)).id
    database = _database(app)
    first = _Served(database)
    try:
        _append(app, run, "a")  # this thread now holds a connection to the first writer
    finally:
        first.stop()
    second = _Served(database)
    try:
        _append(app, run, "b")  # the old connection fails at send: nothing reached anyone
        assert second.writer.writer.commits >= 1
    finally:
        second.stop()
    assert [k for _, k, _ in _stored(app, run)] == ["a", "b"]


def test_a_writer_that_dies_before_answering_is_unavailable(app, fresh_clients):
    """Sent but never answered: stored or not, nobody can tell; 503 and the runner retries."""
    run = make_run(app, make_user(app)).id
    path = event_writer.socket_path(_database(app))
    assert path is not None
    listener = event_writer._listen(path)
    listener.setblocking(True)

    def die_after_reading() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=die_after_reading)
    thread.start()
    try:
        with pytest.raises(DatabaseUnavailableError):
            _append(app, run, "k")
    finally:
        thread.join(timeout=10)
        listener.close()
        os.unlink(path)
    assert _stored(app, run) == []


def test_the_socket_is_private_and_removed_on_close(app, fresh_clients):
    path = event_writer.socket_path(_database(app))
    writer = _Served(_database(app))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    writer.stop()
    assert not os.path.exists(path)


def test_a_writer_leaves_a_newer_writers_socket_alone(app, fresh_clients):
    database = _database(app)
    old = _Served(database)
    new = _Served(database)  # a new master's writer takes the path over
    old.stop()
    assert os.path.exists(new.path)
    new.stop()
    assert not os.path.exists(new.path)


def test_long_paths_get_no_writer(tmp_path):
    deep = tmp_path / ("d" * 120) / "designrun.db"
    assert event_writer.socket_path(str(deep)) is None
    assert event_writer.socket_path("instance/designrun.db").endswith("designrun.db.events.sock")


def test_database_of_urls():
    assert event_writer.database_of("sqlite:///instance/x.db") == "instance/x.db"
    assert event_writer.database_of("sqlite://") is None
    assert event_writer.database_of("postgresql+psycopg://u@h/db") is None


# --- a group, deterministically: _Writer._commit over socket pairs ------------------------------


def _frame(run: uuid.UUID, *keys: str) -> bytes:
    events = [[uuid.uuid4().hex, "log", k, "{}", k] for k in keys]
    return json.dumps([run.hex, events]).encode()


def _group(writer: event_writer._Writer, frames: list[bytes]) -> list[dict[str, Any]]:
    pairs = [socket.socketpair() for _ in frames]
    writer._commit([(ours, frame) for (ours, _), frame in zip(pairs, frames, strict=True)])
    answers = [event_writer._read_answer(theirs) for _, theirs in pairs]
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
    return answers


@pytest.fixture
def writer(app: Any, fresh_clients: None) -> Iterator[event_writer._Writer]:
    database = _database(app)
    path = event_writer.socket_path(database)
    assert path is not None
    writer = event_writer._Writer(database, path)
    yield writer
    writer.close()


def test_a_group_commits_once_in_arrival_order(app, writer):
    user = make_user(app)
    a, b = make_run(app, user).id, make_run(app, user).id
    before = writer.writer.commits
    answers = _group(
        writer, [_frame(a, "a1"), _frame(b, "b1", "b2"), _frame(a, "a2"), _frame(a, "a1")]
    )
    assert writer.writer.commits == before + 1
    assert [k for _, k, _ in _stored(app, a)] == ["a1", "a2"]
    assert [k for _, k, _ in _stored(app, b)] == ["b1", "b2"]
    assert answers[3]["ids"] == answers[0]["ids"]  # the repeated key answers the first id
    assert all(a["status"] == "queued" for a in answers)


def test_in_a_group_an_unknown_run_or_a_malformed_request_fails_alone(app, writer):
    run = make_run(app, make_user(app)).id
    bad = [
        b"{",
        json.dumps([run.hex, [[1, 2, 3, 4, 5]]]).encode(),
        json.dumps([run.hex, []]).encode(),
    ]
    answers = _group(
        writer, [_frame(run, "k1"), _frame(uuid.uuid4(), "x"), *bad, _frame(run, "k2")]
    )
    assert answers[1] == {"error": "not_found"}
    assert [a["error"] for a in answers[2:5]] == ["unavailable"] * 3
    assert "ids" in answers[0] and "ids" in answers[5]
    assert [k for _, k, _ in _stored(app, run)] == ["k1", "k2"]


def test_a_failing_write_fails_the_whole_group_and_stores_nothing(app, writer, monkeypatch):
    run = make_run(app, make_user(app)).id
    real = event_store._store_sqlite

    def store(conn: sqlite3.Connection, job: Any) -> Any:
        result = real(conn, job)  # its rows are written, then the disk "fails"
        if job.prepared[0][4] == "bad":
            raise sqlite3.OperationalError("disk I/O error")
        return result

    monkeypatch.setattr(event_store, "_store_sqlite", store)
    answers = _group(writer, [_frame(run, "k1"), _frame(run, "bad"), _frame(run, "k2")])
    assert [a["error"] for a in answers] == ["unavailable"] * 3
    assert "disk I/O error" in answers[0]["detail"]
    assert _stored(app, run) == []
    monkeypatch.setattr(event_store, "_store_sqlite", real)
    assert "ids" in _group(writer, [_frame(run, "k1")])[0]  # reconnects
    assert [k for _, k, _ in _stored(app, run)] == ["k1"]


def test_a_dead_writers_socket_is_removed_a_live_ones_is_not(app, fresh_clients):
    database = _database(app)
    path = event_writer.socket_path(database)
    assert path is not None
    stale = event_writer._listen(path)
    stale.close()  # bound, nobody listening any more: what a killed writer leaves
    assert os.path.exists(path)
    event_writer.remove_stale_socket(database)
    assert not os.path.exists(path)
    live = _Served(database)
    event_writer.remove_stale_socket(database)
    assert os.path.exists(path)
    live.stop()
