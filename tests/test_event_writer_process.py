"""The SQLite event writer as gunicorn runs it (gunicorn.conf.py, services/event_writer.py).

- The master starts one writer process for the database file, and the workers' events are
  committed by it; a writer that dies is started again; a stopping master stops it and its
  socket goes with it.
- DESIGNRUN_SQLITE_EVENT_WRITER=0, or PostgreSQL: no writer, the workers commit their own.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from designrun.services import event_writer
from tests.factories import make_run, make_user
from tests.servers import GunicornServer, event_writer_pids
from tests.test_gunicorn import runner_bearer, server_env, server_env_dir  # noqa: F401

pytestmark = pytest.mark.slow


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _post(server: GunicornServer, env: dict[str, str], run_id, key: str) -> requests.Response:
    return requests.post(
        f"{server.url}/api/runner/runs/{run_id}/events",
        json={"eventType": "log", "message": key, "idempotencyKey": key},
        headers=runner_bearer(env["RUNNER_AUTH_SECRET"], run_id),
        timeout=30,
    )


def test_the_master_runs_restarts_and_stops_the_writer(
    app,
    database_url,
    server_env,  # noqa: F811
):
    if not database_url.startswith("sqlite"):
        pytest.skip("the event writer is SQLite's")
    database = event_writer.database_of(database_url)
    assert database is not None
    path = Path(event_writer.socket_path(database) or "")
    run = make_run(app, make_user(app), status="running").id
    env = {**server_env, "DATABASE_URL": database_url, "WEB_CONCURRENCY": "2"}
    server = GunicornServer(env, server_env_dir(server_env))
    with server:
        assert server.process is not None
        master = server.process.pid
        _wait_for(lambda: len(event_writer_pids(master)) == 1 and path.exists())
        first = event_writer_pids(master)[0]
        assert _post(server, env, run, "one").status_code == 200

        os.kill(first, signal.SIGKILL)
        _wait_for(lambda: server.stderr().count("committing the events of") == 2)
        # Meanwhile, and after, every request is answered: by the workers, then the new writer.
        for n in range(20):
            assert _post(server, env, run, f"after-{n}").status_code == 200
        assert event_writer_pids(master) not in ([], [first])

        server.process.send_signal(signal.SIGTERM)  # a graceful stop
        assert server.wait_exit(30) == 0
        _wait_for(lambda: not path.exists(), timeout=10)
        assert "event writer exited" in server.stderr()
    assert _writers_of(database) == []


def _writers_of(database: str) -> list[int]:
    """Live writer processes of ``database`` anywhere on the machine."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if "designrun.services.event_writer" in cmdline and database in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_no_writer_when_turned_off(app, database_url, server_env):  # noqa: F811
    run = make_run(app, make_user(app), status="running").id
    env = {
        **server_env,
        "DATABASE_URL": database_url,
        "WEB_CONCURRENCY": "2",
        "DESIGNRUN_SQLITE_EVENT_WRITER": "0",
    }
    with GunicornServer(env, server_env_dir(server_env)) as server:
        assert server.process is not None
        assert _post(server, env, run, "k").status_code == 200
        time.sleep(0.5)
        assert event_writer_pids(server.process.pid) == []


def test_no_writer_on_postgresql(app, database_url, server_env):  # noqa: F811
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    env = {**server_env, "DATABASE_URL": database_url, "WEB_CONCURRENCY": "2"}
    with GunicornServer(env, server_env_dir(server_env)) as server:
        assert server.process is not None
        time.sleep(0.5)
        assert event_writer_pids(server.process.pid) == []
