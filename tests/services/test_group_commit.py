"""SQLite group commit (services/event_store.py ``_GroupCommit``), driven deterministically.

The test holds the process's writer lock while request threads queue up behind it, so the
group that forms is known: everything queued commits in one transaction, in arrival order.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from designrun.database import sqlite_writer
from designrun.errors import DatabaseUnavailableError, RunNotFoundError
from designrun.extensions import db
from designrun.models import RunEvent
from designrun.services import event_store
from designrun.services.event_store import NewEvent
from tests.factories import make_run, make_user

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TEST_DATABASE_URL")), reason="group commit is SQLite's"
)


def _grouped(app: Any, calls: list[Callable[[], Any]], commits: int = 1) -> list[Any]:
    """Run ``calls`` on threads queued behind the writer lock, in order; their outcomes.

    ``commits``: the transactions expected to commit (one for the whole group, or none).
    """
    outcomes: list[Any] = [None] * len(calls)
    with app.app_context():
        writer = sqlite_writer(db.engine)
        assert writer is not None
        group = event_store._GroupCommit.of(writer)

    def call(i: int) -> None:
        with app.app_context():
            try:
                outcomes[i] = calls[i]()
            except Exception as exc:
                outcomes[i] = exc

    threads = []
    with writer.lock:
        for i in range(len(calls)):
            threads.append(threading.Thread(target=call, args=(i,)))
            threads[-1].start()
            deadline = time.monotonic() + 30
            while len(group.queue) < i + 1:  # queued, in this order, before the next starts
                assert time.monotonic() < deadline, "a request never reached the queue"
                time.sleep(0.005)
        before = writer.commits
    for thread in threads:
        thread.join(timeout=30)
    assert writer.commits == before + commits
    return outcomes


def _append(run_id: uuid.UUID, *keys: str) -> Callable[[], Any]:
    events = [NewEvent("log", message=key, idempotency_key=key) for key in keys]
    return lambda: event_store.append(run_id, events)


def _stored(app: Any, run_id: uuid.UUID) -> list[tuple[int, str | None]]:
    with app.app_context():
        rows = db.session.execute(
            select(RunEvent.sequence, RunEvent.idempotency_key)
            .where(RunEvent.run_id == run_id)
            .order_by(RunEvent.sequence)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_queued_requests_commit_together_in_arrival_order(app):
    user = make_user(app)
    a, b = make_run(app, user).id, make_run(app, user).id
    outcomes = _grouped(
        app,
        [_append(a, "a1"), _append(b, "b1", "b2"), _append(a, "a2", "a3"), _append(a, "a1")],
    )
    assert not any(isinstance(o, Exception) for o in outcomes), outcomes
    assert _stored(app, a) == [(1, "a1"), (2, "a2"), (3, "a3")]
    assert _stored(app, b) == [(1, "b1"), (2, "b2")]
    assert outcomes[3][0] == outcomes[0][0]  # the repeated key answers the first id
    assert [status for _, status in outcomes] == ["queued"] * 4


def test_an_unknown_run_fails_alone(app):
    run = make_run(app, make_user(app)).id
    outcomes = _grouped(app, [_append(run, "k1"), _append(uuid.uuid4(), "x"), _append(run, "k2")])
    assert isinstance(outcomes[1], RunNotFoundError)
    assert not isinstance(outcomes[0], Exception) and not isinstance(outcomes[2], Exception)
    assert _stored(app, run) == [(1, "k1"), (2, "k2")]


def test_a_failing_write_fails_the_whole_group_and_stores_nothing(app, monkeypatch):
    run = make_run(app, make_user(app)).id
    real = event_store._store_sqlite

    def store(conn: sqlite3.Connection, job: Any) -> Any:
        if job.prepared[0][4] == "bad":
            real(conn, job)  # its rows are written, then the disk "fails"
            raise sqlite3.OperationalError("disk I/O error")
        return real(conn, job)

    monkeypatch.setattr(event_store, "_store_sqlite", store)
    calls = [_append(run, "k1"), _append(run, "bad"), _append(run, "k2")]
    outcomes = _grouped(app, calls, commits=0)
    assert all(isinstance(o, DatabaseUnavailableError) for o in outcomes), outcomes
    assert _stored(app, run) == []
    monkeypatch.setattr(event_store, "_store_sqlite", real)
    with app.app_context():
        event_store.append(run, [NewEvent("log", idempotency_key="k1")])  # reconnects
    assert _stored(app, run) == [(1, "k1")]
