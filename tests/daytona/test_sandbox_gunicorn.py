"""The sandbox backend in a real serving process: gunicorn's workers launch the sandbox from the
dispatcher's pool (the create request does not wait), the demo agent's run completes in it,
and the watchdog sweep that wsgi.py starts deletes the sandbox afterwards."""

from __future__ import annotations

import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fake_daytona import API_KEY, FakeDaytona
from tests.servers import GunicornServer
from tests.test_local_runner import all_events, create_run, signed_in, wait_for_status
from tests.triggers.support import wait_for

pytestmark = pytest.mark.slow


def test_demo_run_completes_in_a_sandbox_and_the_sandbox_goes(
    app: Any, database_url: str, tmp_path: Path, fake: FakeDaytona
):
    instance = tmp_path / "instance"
    instance.mkdir()
    env = {
        "DATABASE_URL": database_url,
        "DESIGNRUN_INSTANCE_PATH": str(instance),
        "STORAGE_LOCAL_DIR": str(tmp_path / "objects"),
        "RUNNER_AUTH_SECRET": secrets.token_urlsafe(32),
        "RUNNER_BACKEND": "daytona",
        "DAYTONA_API_URL": fake.url,
        "DAYTONA_API_KEY": API_KEY,
        "DAYTONA_SNAPSHOT": "designrun-runner",
        "DAYTONA_WATCH_INTERVAL": "1",
        # The demo agent, quicker than its default pace (the fake gives commands a bare env).
        "DAYTONA_AGENT_COMMAND": shlex.join(
            ["env", "DESIGNRUN_DEMO_DELAY=0.05", sys.executable, "-m", "designrun.agents.demo"]
        ),
        "WEB_CONCURRENCY": "2",
    }
    server = GunicornServer(env, tmp_path)
    server.env["EXPO_PUBLIC_WORKER_ORIGIN"] = server.url
    with server:
        session = signed_in(server)
        run_id = create_run(session, server, "a landing page for a seaside bakery")
        run = wait_for_status(session, server, run_id, {"completed", "failed"}, timeout=90)
        assert run["status"] == "completed", (run, server.stderr()[-3000:])
        events = all_events(session, server, run_id)
        assert any(e["eventType"] == "agent.tool_use" for e in events)
        artifacts = session.get(f"{server.url}/api/design/runs/{run_id}/artifacts").json()
        assert {a["storageKey"].rsplit("/", 1)[-1] for a in artifacts["artifacts"]} >= {
            "index.html",
            "preview.png",
        }
        assert len(fake.created) == 1
        assert wait_for(lambda: not fake.live(), timeout=30), server.stderr()[-3000:]
