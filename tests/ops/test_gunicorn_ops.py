"""Operations under real gunicorn: /metrics aggregated over workers (PROMETHEUS_MULTIPROC_DIR
set up by gunicorn.conf.py), counts that survive a killed worker, LOG_FORMAT=json for the app's
and gunicorn's own lines, the request id in the access log, health endpoints."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import GunicornServer, worker_pids

pytestmark = pytest.mark.slow

REQUESTS = 40


def livez_count(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "designrun_http_requests_total"
                and sample.labels.get("route") == "/livez"
                and sample.labels.get("status") == "200"
            ):
                return sample.value
    return 0.0


def test_metrics_aggregate_every_worker_and_logs_are_json_with_request_ids(
    app, database_url, tmp_path: Path
):
    instance = tmp_path / "instance"
    env = {
        "DESIGNRUN_INSTANCE_PATH": str(instance),
        "RUNNER_AUTH_SECRET": secrets.token_urlsafe(32),
        "DATABASE_URL": database_url,
        "RUNNER_BACKEND": "none",
        "WEB_CONCURRENCY": "3",
        "LOG_FORMAT": "json",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with GunicornServer(env, tmp_path) as server:
        assert server.process is not None
        for i in range(REQUESTS):
            # A new connection each time: the kernel spreads them over the workers.
            r = requests.get(f"{server.url}/livez", headers={"X-Request-ID": f"g-{i}"}, timeout=10)
            assert r.status_code == 200 and r.headers["X-Request-ID"] == f"g-{i}"
        assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200
        # Whichever worker answers the scrape, it reports every worker's requests.
        assert [livez_count(server.url) for _ in range(6)] == [REQUESTS] * 6

        workers = worker_pids(server.process.pid)
        assert len(workers) == 3, workers
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alive = worker_pids(server.process.pid)
            if len(alive) == 3 and workers[0] not in alive:
                break
            time.sleep(0.1)
        # A dead worker's counts stay counted (gunicorn's child_exit marks it dead).
        assert livez_count(server.url) == REQUESTS
        stdout = server.stdout_path.read_text()
        stderr = server.stderr()

    access = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    mine = [line for line in access if str(line.get("request_id", "")).startswith("g-")]
    assert len(mine) == REQUESTS, stdout[-2000:]
    # Three workers write to one stdout: their lines need not arrive in request order.
    assert sorted(line["request_id"] for line in mine) == sorted(f"g-{i}" for i in range(REQUESTS))
    third = next(line for line in mine if line["request_id"] == "g-3")
    assert third["status"] == "200" and third["path"] == "/livez" and "g-3" in third["message"]
    errors = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any("Booting worker" in line["message"] for line in errors), stderr[-2000:]
    assert all("request_id" in line for line in errors)
