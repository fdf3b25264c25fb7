"""Background work under ``flask run`` (issue 6 item 1b): started once, in the serving process.

It starts in the process that serves (the reloader's child, or the only process without the
reloader), never in the reloader's parent, in other CLI commands or in apps built by tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import requests

from designrun import background
from tests.servers import REPO, free_port
from tests.test_local_runner import PASSWORD

MARKER = "designrun: background work started"


@pytest.mark.parametrize(
    ("command", "params", "run_main", "started"),
    [
        ("upgrade", {}, None, False),
        ("create", {"email": "a@b.c"}, None, False),
        ("run", {"host": "127.0.0.1", "port": 5000, "reload": True}, None, False),
        ("run", {"host": "127.0.0.1", "port": 5000, "reload": True}, "true", True),
        ("run", {"host": "0.0.0.0", "port": 5001, "reload": False}, None, True),  # noqa: S104
    ],
)
def test_only_the_serving_flask_run_process_starts_it(
    app_factory, monkeypatch, command, params, run_main, started
):
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    if run_main:
        monkeypatch.setenv("WERKZEUG_RUN_MAIN", run_main)
    else:
        monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    app = app_factory()
    assert app.extensions.get(background._EXTENSION) is None  # create_app outside the CLI
    ctx = click.Context(click.Command(command), info_name=command)
    ctx.params.update(params)
    try:
        with ctx:
            assert background.start_under_flask_run(app) is started
        if started:
            assert app.config["LOCAL_RUNNER_BIND_ORIGIN"] == f"http://127.0.0.1:{params['port']}"
    finally:
        background.stop(app)


@pytest.mark.slow
def test_a_run_created_under_flask_run_completes(server_env):
    port = free_port()
    env = {
        **os.environ,
        **server_env,
        "DESIGNRUN_DEMO_DELAY": "0.01",
        "PYTHONUNBUFFERED": "1",
    }
    logs = Path(server_env["DESIGNRUN_INSTANCE_PATH"]).parent
    out, err = (logs / "flask.out").open("wb"), (logs / "flask.err").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "designrun",
            "run",
            "--port",
            str(port),
            "--reload",
        ],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=err,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        session = requests.Session()
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (logs / "flask.err").read_text()
            try:
                r = session.post(
                    f"{url}/api/auth/sign-up/email",
                    json={"email": "dev@example.com", "password": PASSWORD, "name": "Dev"},
                    timeout=10,
                )
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, (logs / "flask.err").read_text()
                time.sleep(0.2)
        assert r.status_code == 200, r.text
        session.headers["Authorization"] = f"Bearer {r.json()['token']}"
        r = session.post(f"{url}/api/design/runs", json={"prompt": "a dev server run"}, timeout=10)
        run_id = r.json()["run"]["id"]
        deadline = time.monotonic() + 60
        status = "queued"
        while status not in {"completed", "failed"} and time.monotonic() < deadline:
            time.sleep(0.2)
            status = session.get(f"{url}/api/design/runs/{run_id}", timeout=10).json()["run"][
                "status"
            ]
        assert status == "completed", (logs / "flask.err").read_text()[-3000:]
        # once: in the reloader's child, not in its parent
        assert (logs / "flask.err").read_text().count(MARKER) == 1
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        out.close()
        err.close()
