"""Two gunicorn masters (two hosts: separate instance folders) on one PostgreSQL database.

200 runs created concurrently through both give exactly 200 job requests, one per run; then,
as no runner ever reports, the reapers of every worker of both hosts fail each run exactly
once (start_timeout): one transition row and one error event per run.
"""

from __future__ import annotations

import os
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from designrun.extensions import db
from designrun.models import Run, RunEvent, RunTransition
from tests.servers import GunicornServer
from tests.triggers.support import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("TEST_DATABASE_URL"), reason="several hosts share PostgreSQL, not SQLite"
    ),
]

RUNS = 200
PASSWORD = "a-long-password"


def test_two_hosts_send_each_job_once_and_reap_each_run_once(
    app, database_url, daytona, tmp_path: Path
):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    secret = secrets.token_urlsafe(32)
    servers = []
    for host in ("a", "b"):
        instance = tmp_path / host
        instance.mkdir()
        env = {
            "DATABASE_URL": database_url,
            "DESIGNRUN_INSTANCE_PATH": str(instance),
            "RUNNER_AUTH_SECRET": secret,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "DAYTONA_API_URL": f"http://127.0.0.1:{daytona.port}",
            "RUN_START_TIMEOUT": "3",
            "WEB_CONCURRENCY": "2",
            "GUNICORN_ACCESSLOG": "",
        }
        servers.append(GunicornServer(env, tmp_path, name=f"host-{host}").start())
    try:
        for server in servers:
            server.wait_ready()
        r = requests.post(
            f"{servers[0].url}/api/auth/sign-up/email",
            json={"email": "two@example.com", "password": PASSWORD, "name": "T"},
            timeout=30,
        )
        headers = {"Authorization": f"Bearer {r.json()['token']}"}

        def create(n: int) -> str:
            server = servers[n % 2]
            r = requests.post(
                f"{server.url}/api/design/runs",
                json={"prompt": f"run {n}"},
                headers=headers,
                timeout=60,
            )
            assert r.status_code == 201, r.text
            return str(r.json()["run"]["id"])

        with ThreadPoolExecutor(max_workers=16) as pool:
            created = list(pool.map(create, range(RUNS)))

        assert wait_for(lambda: len(daytona.log) >= RUNS, timeout=60), len(daytona.log)
        sent = Counter(request.get_json()["runId"] for request, _ in daytona.log)
        assert sorted(sent) == sorted(created) and set(sent.values()) == {1}

        def reaped() -> int:
            with app.app_context():
                try:
                    return int(
                        db.session.scalar(
                            select(func.count()).where(Run.failure_reason == "start_timeout")
                        )
                    )
                finally:
                    db.session.remove()

        assert wait_for(lambda: reaped() == RUNS, timeout=60), reaped()
        with app.app_context():
            transitions = Counter(db.session.scalars(select(RunTransition.run_id)))
            errors = Counter(
                db.session.scalars(select(RunEvent.run_id).where(RunEvent.event_type == "error"))
            )
            db.session.remove()
        assert len(transitions) == RUNS and set(transitions.values()) == {1}
        assert len(errors) == RUNS and set(errors.values()) == {1}
        assert len(daytona.log) == RUNS  # nothing was sent again meanwhile
    finally:
        for server in servers:
            server.stop()
