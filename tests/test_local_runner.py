"""The built-in local runner end to end, through a real gunicorn process.

A run created with the defaults is executed by ``designrun-runner`` + the demo agent as a
subprocess of the service, over the same HTTP callbacks a remote runner uses, and reaches
``completed`` with its artifacts in storage; a failing command fails the run with its error tail;
a cancelled run's command is stopped; LOCAL_RUNNER_CONCURRENCY bounds the runs at once.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import GunicornServer, server_environment

pytestmark = pytest.mark.slow

PASSWORD = "a-long-password"


@pytest.fixture
def server_env(app: Any, database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment of a server on the test database (``app`` empties its tables afterwards)."""
    return server_environment(
        database_url,
        tmp_path,
        RUNNER_BACKEND="local",
        LOCAL_RUNNER_HEARTBEAT="0.5",
        DESIGNRUN_DEMO_DELAY="0.1",
    )


def python_command(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


def signed_in(server: GunicornServer) -> requests.Session:
    session = requests.Session()
    email = f"{secrets.token_hex(4)}@example.com"
    r = session.post(
        f"{server.url}/api/auth/sign-up/email",
        json={"email": email, "password": PASSWORD, "name": "T"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    session.headers["Authorization"] = f"Bearer {r.json()['token']}"
    return session


def create_run(session: requests.Session, server: GunicornServer, prompt: str) -> str:
    started = time.monotonic()
    r = session.post(f"{server.url}/api/design/runs", json={"prompt": prompt}, timeout=30)
    assert r.status_code == 201, r.text
    assert time.monotonic() - started < 5, "the create response waited for the runner"
    return str(r.json()["run"]["id"])


def get_run(session: requests.Session, server: GunicornServer, run_id: str) -> dict[str, Any]:
    r = session.get(f"{server.url}/api/design/runs/{run_id}", timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json()["run"])


def wait_for_status(session, server, run_id, statuses, timeout=60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run = get_run(session, server, run_id)
    while run["status"] not in statuses and time.monotonic() < deadline:
        time.sleep(0.2)
        run = get_run(session, server, run_id)
    assert run["status"] in statuses, (run, server.stderr()[-3000:])
    return run


def all_events(session, server, run_id) -> list[dict[str, Any]]:
    events, after = [], 0
    while True:
        r = session.get(
            f"{server.url}/api/design/runs/{run_id}/events",
            params={"after": after, "limit": 1000},
            timeout=30,
        )
        page = r.json()
        events += page["events"]
        if page["nextCursor"] is None:
            return events
        after = page["nextCursor"]


def test_default_run_completes_with_ordered_events_and_stored_artifacts(server_env):
    with GunicornServer(server_env, Path(server_env["DESIGNRUN_INSTANCE_PATH"]).parent) as server:
        session = signed_in(server)
        run_id = create_run(session, server, "a landing page for a calm ocean-side bakery")
        run = wait_for_status(session, server, run_id, {"completed", "failed"})
        assert run["status"] == "completed", run
        assert run["progress"] == 1 and run["startedAt"] and run["completedAt"]

        events = all_events(session, server, run_id)
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        types = [e["eventType"] for e in events]
        assert types.count("agent.tool_use") >= 5 and "log.stdout" in types

        artifacts = session.get(f"{server.url}/api/design/runs/{run_id}/artifacts").json()
        names = {a["storageKey"].rsplit("/", 1)[-1]: a for a in artifacts["artifacts"]}
        expected = {"index.html", "styles.css", "design-system.json", "preview.png", "report.md"}
        assert expected <= set(names), names
        root = Path(server_env["STORAGE_LOCAL_DIR"])
        for name, artifact in names.items():
            stored = root / artifact["storageKey"]
            assert stored.is_file(), name
            assert stored.stat().st_size == artifact["sizeBytes"] > 0, name
            assert artifact["storageKey"].startswith(f"runs/{run_id}/")
        content = session.get(
            f"{server.url}/api/design/runs/{run_id}/artifacts/{names['preview.png']['id']}/content"
        )
        assert content.status_code == 200 and content.content.startswith(b"\x89PNG")


def test_failing_command_fails_the_run_with_its_error_tail(server_env):
    code = "import sys; print('working on it'); sys.stderr.write('boom: disk full\\n'); sys.exit(3)"
    env = {**server_env, "LOCAL_RUNNER_COMMAND": python_command(code)}
    with GunicornServer(env, Path(env["DESIGNRUN_INSTANCE_PATH"]).parent) as server:
        session = signed_in(server)
        run_id = create_run(session, server, "anything")
        run = wait_for_status(session, server, run_id, {"completed", "failed"})
        assert run["status"] == "failed", run
        assert "code 3" in run["error"] and "boom: disk full" in run["error"]
        messages = [e["message"] for e in all_events(session, server, run_id)]
        assert "working on it" in messages and "boom: disk full" in messages


def test_cancelled_run_stops_its_command_within_seconds(server_env, tmp_path):
    pid_file = tmp_path / "agent.pid"
    code = (
        "import os, time, pathlib; "
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
        "print('sleeping', flush=True); time.sleep(600)"
    )
    env = {**server_env, "LOCAL_RUNNER_COMMAND": python_command(code)}
    with GunicornServer(env, Path(env["DESIGNRUN_INSTANCE_PATH"]).parent) as server:
        session = signed_in(server)
        run_id = create_run(session, server, "anything")
        wait_for_status(session, server, run_id, {"running"})
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        assert process_alive(pid)

        # what a user cancel does: the run becomes terminal; the runner sees 409 and stops
        r = requests.post(
            f"{server.url}/api/runner/runs/{run_id}/status",
            json={"status": "cancelled"},
            headers={"Authorization": f"Bearer {env['RUNNER_AUTH_SECRET']}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 15
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not process_alive(pid), "the cancelled run's command is still running"
        assert get_run(session, server, run_id)["status"] == "cancelled"


def test_concurrency_bound_keeps_extra_runs_queued(server_env):
    code = "import time; print('step', flush=True); time.sleep(2)"
    env = {
        **server_env,
        "LOCAL_RUNNER_COMMAND": python_command(code),
        "LOCAL_RUNNER_CONCURRENCY": "1",
    }
    with GunicornServer(env, Path(env["DESIGNRUN_INSTANCE_PATH"]).parent) as server:
        session = signed_in(server)
        first = create_run(session, server, "one")
        second = create_run(session, server, "two")
        seen_one_running_other_queued = False
        deadline = time.monotonic() + 60
        states: tuple[str, str] = ("", "")
        while time.monotonic() < deadline:
            states = (
                get_run(session, server, first)["status"],
                get_run(session, server, second)["status"],
            )
            assert "running" not in states or states.count("running") == 1, states
            if sorted(states) == ["queued", "running"]:
                seen_one_running_other_queued = True
            if states == ("completed", "completed"):
                break
            time.sleep(0.1)
        assert states == ("completed", "completed"), states
        assert seen_one_running_other_queued


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


AGENT_WITH_MANIFEST = r"""
import json, os, pathlib
out = pathlib.Path(os.environ["DESIGNRUN_OUTPUT_DIR"])
assert "DESIGNRUN_RUNNER_TOKEN" not in os.environ and "RUNNER_AUTH_SECRET" not in os.environ
(out / "shot.png").write_bytes(b"\x89PNG fake")
(out / "notes.txt").write_text(os.environ["DESIGNRUN_PROMPT"])
(out / "sub").mkdir()
(out / "sub" / "data.bin").write_bytes(b"\x00\x01\x02")
(out / "designrun-artifacts.json").write_text(json.dumps(
    {"sub/data.bin": {"artifactType": "model", "contentType": "application/x-model",
                      "metadata": {"epochs": 3}}}))
(out / "page.html").write_text("<h1>hi</h1>")
print("::designrun:: " + json.dumps({"artifact": {"path": "page.html", "artifactType": "site"},
                                    "progress": 0.5,
                                    "event": {"eventType": "agent.step", "message": "wrote"}}))
print("::designrun:: {not json")
"""


def test_output_files_are_uploaded_typed_by_protocol_manifest_or_extension(server_env, tmp_path):
    script = tmp_path / "agent.py"
    script.write_text(AGENT_WITH_MANIFEST)
    env = {**server_env, "LOCAL_RUNNER_COMMAND": shlex.join([sys.executable, str(script)])}
    with GunicornServer(env, Path(env["DESIGNRUN_INSTANCE_PATH"]).parent) as server:
        session = signed_in(server)
        run_id = create_run(session, server, "notes for the report")
        run = wait_for_status(session, server, run_id, {"completed", "failed"})
        assert run["status"] == "completed", run
        artifacts = session.get(f"{server.url}/api/design/runs/{run_id}/artifacts").json()
        by_path = {a["metadata"]["path"]: a for a in artifacts["artifacts"]}
        assert set(by_path) == {"page.html", "shot.png", "notes.txt", "sub/data.bin"}
        assert by_path["page.html"]["artifactType"] == "site"
        assert by_path["shot.png"]["artifactType"] == "screenshot"
        assert by_path["notes.txt"]["artifactType"] == "report"
        assert by_path["notes.txt"]["sizeBytes"] == len("notes for the report")
        model = by_path["sub/data.bin"]
        assert model["artifactType"] == "model"
        assert model["contentType"] == "application/x-model"
        assert model["metadata"]["epochs"] == 3 and model["sizeBytes"] == 3
        events = all_events(session, server, run_id)
        kinds = [e["eventType"] for e in events]
        assert "agent.step" in kinds and "runner.warning" in kinds
