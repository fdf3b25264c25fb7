"""Local runner processes through real gunicorn servers (API.md Part 2 § Run lifecycle).

- a cancel stops the agent within 10 s, whether it reaches the launching worker, another one,
  or no server process at all (another host: only the database changes);
- runner processes outlive a full server stop; after the restart they still count against
  LOCAL_RUNNER_CONCURRENCY, and one that dies is failed as ``runner_exited`` with its stderr;
- the runner calls back to the server's own address whatever Host the create request named,
  and a SIGKILLed supervisor worker hands the launcher role over.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from designrun.services import runs
from tests.servers import GunicornServer
from tests.test_local_runner import (
    create_run,
    get_run,
    process_alive,
    python_command,
    signed_in,
    wait_for_status,
)

pytestmark = pytest.mark.slow

CANCEL_WITHIN = 10.0


def sleeping_agent(folder: Path) -> str:
    """An agent that records its pid in ``folder/<runId>`` and sleeps."""
    code = (
        "import os, pathlib, time; "
        f"p = pathlib.Path({str(folder)!r}) / os.environ['DESIGNRUN_RUN_ID']; "
        "p.write_text(str(os.getpid())); print('sleeping', flush=True); time.sleep(600)"
    )
    return python_command(code)


def agent_pid(folder: Path, run_id: str) -> int:
    path = folder / run_id
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.1)
    raise AssertionError(f"the agent of {run_id} never started")


def runner_pid(instance: Path, run_id: str) -> int:
    return int(json.loads((instance / "local-runs" / f"{run_id}.pid").read_text())["pid"])


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not process_alive(pid)


@pytest.fixture
def env(server_env, tmp_path):
    agents = tmp_path / "agents"
    agents.mkdir()
    # A slow heartbeat: the runner would learn of a cancel only after 30 s from its own 409,
    # so what stops it within 10 s here is the server side.
    return {
        **server_env,
        "LOCAL_RUNNER_COMMAND": sleeping_agent(agents),
        "LOCAL_RUNNER_HEARTBEAT": "30",
        "AGENTS": str(agents),
    }


def test_cancel_stops_the_agent_from_any_worker_or_host(app, env):
    agents = Path(env["AGENTS"])
    with GunicornServer(env, agents.parent) as server:
        session = signed_in(server)
        by_api = create_run(session, server, "one")
        by_other_host = create_run(session, server, "two")
        pids = {run_id: agent_pid(agents, run_id) for run_id in (by_api, by_other_host)}
        wait_for_status(session, server, by_api, {"running"})
        wait_for_status(session, server, by_other_host, {"running"})
        # The worker that launched them is gone (gunicorn starts another one).
        instance = Path(env["DESIGNRUN_INSTANCE_PATH"])
        os.kill(int((instance / "local-runner.lock").read_text().split()[0]), signal.SIGKILL)
        session.close()  # a kept-alive connection to the killed worker would be reset

        r = session.post(f"{server.url}/api/design/runs/{by_api}/cancel", timeout=30)
        assert r.status_code == 200, r.text
        # Another host: only the database changes, no process of this server hears of it.
        run = get_run(session, server, by_other_host)
        with app.app_context():
            runs.cancel_run(uuid.UUID(run["accountId"]), uuid.UUID(by_other_host), "elsewhere")

        for run_id, pid in pids.items():
            assert gone_within(pid, CANCEL_WITHIN), f"agent of {run_id} still runs"
            assert get_run(session, server, run_id)["status"] == "cancelled"


def test_runs_survive_a_restart_count_against_the_limit_and_a_dead_runner_fails(app, env):
    agents = Path(env["AGENTS"])
    instance = Path(env["DESIGNRUN_INSTANCE_PATH"])
    env = {**env, "LOCAL_RUNNER_CONCURRENCY": "1", "WEB_CONCURRENCY": "1"}
    with GunicornServer(env, agents.parent) as first:
        session = signed_in(first)
        old = create_run(session, first, "launched before the restart")
        agent = agent_pid(agents, old)
        wait_for_status(session, first, old, {"running"})
        runner = runner_pid(instance, old)
    # The whole server is gone (SIGKILL), the runner process is not.
    assert process_alive(runner) and process_alive(agent)

    second = GunicornServer(env, agents.parent)
    second.port, second.url = first.port, first.url  # the address the runner calls back to
    second.env["BIND"] = f"127.0.0.1:{first.port}"
    with second:
        new = create_run(session, second, "waits for the slot")
        withdrawn = create_run(session, second, "cancelled while queued")
        time.sleep(3)  # several dispatcher passes: the old run still holds the only slot
        assert get_run(session, second, new)["status"] == "queued"
        r = session.post(f"{second.url}/api/design/runs/{withdrawn}/cancel", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["run"]["dispatch"]["state"] == "none"

        os.kill(runner, signal.SIGKILL)  # the runner dies without a final status
        failed = wait_for_status(session, second, old, {"failed"}, timeout=30)
        assert failed["failureReason"] == "runner_exited", failed
        events = session.get(f"{second.url}/api/design/runs/{old}/events", timeout=30).json()
        errors = [e["message"] for e in events["events"] if e["eventType"] == "error"]
        assert errors and f"run {old}: running" in errors[-1], errors  # its stderr's last lines
        os.kill(agent, signal.SIGKILL)

        wait_for_status(session, second, new, {"running"}, timeout=30)  # the slot is free
        new_agent = agent_pid(agents, new)
        r = session.post(f"{second.url}/api/design/runs/{new}/cancel", timeout=30)
        assert r.status_code == 200, r.text
        assert gone_within(new_agent, CANCEL_WITHIN)
        assert not (agents / withdrawn).exists()  # the withdrawn run never started
        steps = get_run(session, second, withdrawn)["transitions"]
        assert [(t["from"], t["to"], t["by"]) for t in steps] == [("queued", "cancelled", "user")]


class Trap:
    """A listening socket that records whether anything connected to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()


def test_callbacks_go_to_the_bind_address_and_the_supervisor_role_survives_a_kill(server_env):
    env = {**server_env, "DESIGNRUN_DEMO_DELAY": "0.01"}
    trap = Trap()
    instance = Path(env["DESIGNRUN_INSTANCE_PATH"])
    with GunicornServer(env, instance.parent) as server:
        session = signed_in(server)
        r = session.post(
            f"{server.url}/api/design/runs",
            json={"prompt": "a named Host must not choose the callback"},
            headers={"Host": f"127.0.0.1:{trap.port}"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        run = wait_for_status(session, server, r.json()["run"]["id"], {"completed", "failed"})
        assert run["status"] == "completed", run
        assert trap.hits == 0

        supervisor = int((instance / "local-runner.lock").read_text().split()[0])
        os.kill(supervisor, signal.SIGKILL)  # what gunicorn's timeout does to a stuck worker
        session.close()  # a kept-alive connection to the killed worker would be reset
        again = create_run(session, server, "after the supervisor was killed")
        run = wait_for_status(session, server, again, {"completed", "failed"})
        assert run["status"] == "completed", run
        assert int((instance / "local-runner.lock").read_text().split()[0]) != supervisor
    trap.sock.close()
