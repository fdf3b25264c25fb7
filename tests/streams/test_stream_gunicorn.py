"""The live tail over real gunicorn processes (API.md Part 2 § Live tail).

- events written through one server reach a stream held by another server on the same database
  (two gunicorn masters: "another process or host"), in order, each once;
- a stream resumed with Last-Event-ID continues exactly after it, and ``end`` closes it;
- ``: ping`` comments arrive while nothing happens (STREAM_PING_INTERVAL shortened);
- the per-process cap answers 503 + Retry-After, and a client that disconnects frees its slot.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import GunicornServer, server_environment
from tests.streams.sse import Stream

pytestmark = pytest.mark.slow


@pytest.fixture
def server_env(app: Any, database_url: str, tmp_path: Path) -> dict[str, str]:
    """A server environment on the test database (``app`` empties its tables afterwards)."""
    return server_environment(
        database_url,
        tmp_path,
        RUNNER_BACKEND="none",
        STREAM_PING_INTERVAL="0.3",
        GUNICORN_ACCESSLOG="",
    )


def sign_up(server: GunicornServer) -> dict[str, str]:
    r = requests.post(
        f"{server.url}/api/auth/sign-up/email",
        json={"email": f"{secrets.token_hex(5)}@example.com", "password": "pw-" * 4, "name": "S"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def new_run(server: GunicornServer, user: dict[str, str]) -> str:
    r = requests.post(
        f"{server.url}/api/design/runs", json={"prompt": "stream me"}, headers=user, timeout=30
    )
    assert r.status_code == 201, r.text
    return str(r.json()["run"]["id"])


def runner(env: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['RUNNER_AUTH_SECRET']}"}


def post_lines(server: GunicornServer, env: dict[str, str], run_id: str, *lines: str) -> None:
    for line in lines:
        r = requests.post(
            f"{server.url}/api/runner/runs/{run_id}/events",
            json={"eventType": "log", "message": line},
            headers=runner(env),
            timeout=30,
        )
        assert r.status_code == 200, r.text


def set_status(server: GunicornServer, env: dict[str, str], run_id: str, **body: Any) -> None:
    r = requests.post(
        f"{server.url}/api/runner/runs/{run_id}/status", json=body, headers=runner(env), timeout=30
    )
    assert r.status_code == 200, r.text


def stream_url(server: GunicornServer, run_id: str) -> str:
    return f"{server.url}/api/design/runs/{run_id}/events/stream"


def test_events_through_another_server_reach_the_stream_and_resume_continues(server_env, tmp_path):
    with (
        GunicornServer(server_env, tmp_path, "reader") as reader,
        GunicornServer(server_env, tmp_path, "writer") as writer,
    ):
        user = sign_up(reader)
        run_id = new_run(reader, user)
        with Stream(stream_url(reader, run_id), user) as live:
            assert live.status_code == 200
            assert live.next_message().retry == 2000
            assert live.next_message().json()["status"] == "queued"
            post_lines(writer, server_env, run_id, "one", "two", "three")
            got = []
            for message in live.messages():
                if message.event == "event":
                    got.append((message.id, message.json()["message"]))
                if len(got) == 3:
                    break
            assert got == [("1", "one"), ("2", "two"), ("3", "three")]

        # The client went away after line 2 was handled; more lines arrive, the run finishes.
        post_lines(writer, server_env, run_id, "four", "five")
        set_status(writer, server_env, run_id, status="completed")
        with Stream(stream_url(reader, run_id), {**user, "Last-Event-ID": "2"}) as resumed:
            events, end = resumed.events_until_end()
        assert [(m.id, m.json()["message"]) for m in events] == [
            ("3", "three"),
            ("4", "four"),
            ("5", "five"),
        ]
        assert end is not None and end.json() == {"status": "completed"}


def test_pings_while_idle_and_end_when_the_run_finishes(server_env, tmp_path):
    with GunicornServer(server_env, tmp_path) as server:
        user = sign_up(server)
        run_id = new_run(server, user)
        with Stream(stream_url(server, run_id), user) as live:
            pings = 0
            for message in live.messages():
                pings += message.comments.count("ping")
                if pings == 3:
                    break
            set_status(server, server_env, run_id, status="running", progress=0.25)
            set_status(server, server_env, run_id, status="failed", error="boom")
            tail = list(live.messages())
        assert tail[-1].event == "end" and tail[-1].json() == {"status": "failed"}
        last_run = [m for m in tail if m.event == "run"][-1].json()
        assert last_run["status"] == "failed" and last_run["error"] == "boom"


def test_cap_is_503_with_retry_after_and_a_disconnected_client_frees_its_slot(server_env, tmp_path):
    env = {**server_env, "WEB_CONCURRENCY": "1", "STREAM_MAX_PER_PROCESS": "2"}
    with GunicornServer(env, tmp_path) as server:
        user = sign_up(server)
        run_id = new_run(server, user)
        first = Stream(stream_url(server, run_id), user)
        second = Stream(stream_url(server, run_id), user)
        assert (first.status_code, second.status_code) == (200, 200)
        full = requests.get(stream_url(server, run_id), headers=user, timeout=30)
        assert full.status_code == 503, full.text
        assert full.json()["code"] == "streams_full"
        assert int(full.headers["Retry-After"]) >= 1
        # the API is not starved while the streams hold their threads
        assert requests.get(f"{server.url}/api/design/runs", headers=user, timeout=5).ok

        first.close()  # the client disconnects; the server notices at its next write (a ping)
        deadline = time.monotonic() + 20
        status = 503
        while status == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
            third = Stream(stream_url(server, run_id), user)
            status = third.status_code
            if status == 200:
                third.close()
        assert status == 200, "the disconnected stream's slot was never freed"
        second.close()


def test_a_graceful_stop_ends_open_streams_instead_of_holding_the_worker(server_env, tmp_path):
    env = {**server_env, "WEB_CONCURRENCY": "1", "STREAM_PING_INTERVAL": "60"}
    with GunicornServer(env, tmp_path) as server:
        user = sign_up(server)
        run_id = new_run(server, user)
        # A read timeout below gunicorn's graceful_timeout (20 s): the stream must end first.
        live = Stream(stream_url(server, run_id), user, timeout=15)
        assert live.next_message().retry == 2000
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGTERM)
        rest = list(live.messages())  # ends when the server closes the stream
        assert all(m.event != "end" for m in rest)  # closed, not finished: clients reconnect
        assert server.wait_exit(timeout=30) == 0
