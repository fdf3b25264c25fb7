"""Writers hold a bounded number of file descriptors, however many threads write (issue 6 #9).

A descriptor of ``<db>.writelock`` used to be opened per writing thread and never closed: 200
threads calling ``fail_run`` left 201 descriptors open, and the development server (a thread per
request) leaked one per write request.
"""

from __future__ import annotations

import os
import threading

import pytest

from designrun.database import PgConnections
from designrun.extensions import db
from designrun.models import Run
from designrun.services import runs
from tests.factories import make_run, make_user


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _in_threads(app, work, count: int) -> None:
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            with app.app_context():
                work(i)
                db.session.remove()
        except BaseException as exc:  # reported below: an exception in a thread is silent
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.skipif(
    bool(os.environ.get("TEST_DATABASE_URL")), reason="the writer-queue file is SQLite's"
)
def test_200_threads_failing_runs_leave_no_descriptor_behind(app):
    user = make_user(app)
    run_ids = [make_run(app, user).id for _ in range(200)]
    # One write first, so that the process's own descriptor and connections exist already.
    _in_threads(app, lambda i: runs.fail_run(make_run(app, user).id, "warm-up"), 1)
    before = _open_descriptors()

    _in_threads(app, lambda i: runs.fail_run(run_ids[i], "could not start"), 200)

    assert _open_descriptors() <= before + 2  # at most a pooled connection or two
    with app.app_context():
        failed = db.session.query(Run).filter(Run.id.in_(run_ids), Run.status == "failed")
        assert failed.count() == 200


def test_one_thread_per_event_request_leaves_no_descriptor_behind(app, client):
    """The development server's shape: each write request on a thread of its own."""
    from tests.factories import runner_headers

    user = make_user(app)
    run = make_run(app, user)
    headers = runner_headers(app, run)
    client.post(f"/api/runner/runs/{run.id}/events", json={"eventType": "log"}, headers=headers)
    before = _open_descriptors()

    def post(i: int) -> None:
        body = {"eventType": "log", "message": str(i)}
        resp = app.test_client().post(
            f"/api/runner/runs/{run.id}/events", json=body, headers=headers
        )
        assert resp.status_code == 200

    for _ in range(5):
        _in_threads(app, post, 20)

    # On PostgreSQL the fast path keeps a few idle connections for the next requests.
    idle = PgConnections.MAX_IDLE if os.environ.get("TEST_DATABASE_URL") else 0
    assert _open_descriptors() <= before + 2 + idle


def test_idle_fast_path_connections_are_closed_at_exit(app, client):
    """``close_pg_connections`` (registered with atexit) says goodbye to the server for every
    idle fast-path connection, instead of leaving them to the garbage collector."""
    from designrun.database import close_pg_connections, pg_connections
    from designrun.extensions import db
    from tests.factories import runner_headers

    with app.app_context():
        pool = pg_connections(db.engine)
    if pool is None:
        pytest.skip("the event fast path's own connections are PostgreSQL's")
    run = make_run(app, make_user(app))
    resp = client.post(
        f"/api/runner/runs/{run.id}/events",
        json={"eventType": "log"},
        headers=runner_headers(app, run),
    )
    assert resp.status_code == 200
    idle = list(pool.idle)
    assert idle  # the request gave its connection back
    close_pg_connections()
    assert pool.idle == []
    assert all(conn.closed for conn in idle)
