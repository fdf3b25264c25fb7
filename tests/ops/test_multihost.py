"""Several hosts (docs/deploy.md): two gunicorn masters with their own instance folders on one
PostgreSQL database and one S3 bucket (moto's server), behind a real nginx configured with
deploy/nginx.conf that alternates between them.

Users and runners talk only to nginx. A pytest-httpserver job service (the ``jobs`` backend)
answers each job request at once and plays its runner in a thread with ``designrun.runner``:
``running``, EVENTS log events in batches, one uploaded artifact, ``completed``. Checked:
- RUNS runs complete; every event is stored once and in order; each artifact is in the bucket;
- the runners' requests were spread over both hosts, and the ``/metrics`` of each host (scraped
  directly) counts its share of the ingested events, the shares adding up to all of them;
- one host SIGKILLed (master and workers) while a run is half-way: the run still completes
  through the other host, its log whole and in order, and new runs are still dispatched.

PostgreSQL only (SQLite is one host's database by design); marked slow.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from designrun.runner.client import RunnerClient
from tests.nginx import Nginx, nginx_binary
from tests.servers import GunicornServer
from tests.storage import s3server
from tests.streams.sse import Stream

moto_endpoint = s3server.moto_endpoint
s3_target = s3server.s3_target

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("TEST_DATABASE_URL"), reason="several hosts need PostgreSQL"
    ),
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (make test)"),
]

# 50 runs complete in well under a minute on two cores, so the test uses the number.
RUNS = 50
EVENTS = 12
BATCH = 4
TIMEOUT = 180.0


class JobService:
    """The job service behind DAYTONA_API_URL: accepts a job at once, then plays its runner."""

    def __init__(self, server: HTTPServer, workdir: Path) -> None:
        self.workdir = workdir
        self.jobs: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.halfway: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="runner")
        server.expect_request("/jobs", method="POST").respond_with_handler(self.handle)

    def hold(self, prompt: str) -> tuple[threading.Event, threading.Event]:
        """Runs with this prompt stop half-way until the returned gate is set."""
        gate, halfway = threading.Event(), threading.Event()
        self.gates[prompt], self.halfway[prompt] = gate, halfway
        return gate, halfway

    def handle(self, request: Request) -> Response:
        job = request.get_json()
        with self.lock:
            first = job["runId"] not in self.jobs
            self.jobs[job["runId"]] = job
        if first:  # a job request retried after a lost answer is not played twice
            self.pool.submit(self.play, job)
        return Response('{"id": "job"}', status=200, content_type="application/json")

    def play(self, job: dict[str, Any]) -> None:
        try:
            artifact = self.workdir / f"{job['runId']}.txt"
            artifact.write_text(f"design for {job['runId']}\n")
            client = RunnerClient.from_job(
                job, batch_size=BATCH, flush_interval=0.01, backoff_base=0.1, max_attempts=20
            )
            with client:
                client.set_status("running")
                for i in range(EVENTS):
                    client.event("log", f"line {i}")
                    if i == EVENTS // 2 and job["prompt"] in self.gates:
                        client.flush()
                        self.halfway[job["prompt"]].set()
                        assert self.gates[job["prompt"]].wait(TIMEOUT)
                client.upload_artifact(artifact, "file", content_type="text/plain")
                client.set_status("completed")
        except Exception as exc:  # reported by the test, never lost in a thread
            self.errors.append(f"{job['runId']}: {exc!r}")


def host_env(base: dict[str, str], tmp_path: Path, name: str) -> dict[str, str]:
    instance = tmp_path / name
    instance.mkdir()
    return {**base, "DESIGNRUN_INSTANCE_PATH": str(instance)}


def metric(url: str, name: str, **labels: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def runner_requests(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "designrun_http_requests_total"
        and sample.labels.get("route", "").startswith("/api/runner/")
    )


class User:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        r = self.session.post(
            f"{base}/api/auth/sign-up/email",
            json={"email": f"ops-{uuid.uuid4().hex[:8]}@example.com", "password": "p" * 12},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        self.session.headers["Authorization"] = f"Bearer {r.json()['token']}"

    def create(self, prompt: str) -> str:
        r = self.session.post(f"{self.base}/api/design/runs", json={"prompt": prompt}, timeout=30)
        assert r.status_code == 201, r.text
        return str(r.json()["run"]["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.session.get(f"{self.base}/api/design/runs/{run_id}", timeout=30)
        assert r.status_code == 200, r.text
        return dict(r.json()["run"])

    def events(self, run_id: str) -> list[dict[str, Any]]:
        r = self.session.get(
            f"{self.base}/api/design/runs/{run_id}/events", params={"limit": 1000}, timeout=30
        )
        assert r.status_code == 200, r.text
        return list(r.json()["events"])

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        r = self.session.get(f"{self.base}/api/design/runs/{run_id}/artifacts", timeout=30)
        assert r.status_code == 200, r.text
        return list(r.json()["artifacts"])

    def wait_finished(self, run_ids: list[str], service: JobService) -> dict[str, str]:
        deadline = time.monotonic() + TIMEOUT
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            assert service.errors == [], service.errors
            statuses = {run_id: self.run(run_id)["status"] for run_id in run_ids}
            if all(s in {"completed", "failed", "cancelled"} for s in statuses.values()):
                return statuses
            time.sleep(0.5)
        raise AssertionError(f"runs not finished: {statuses}")


def check_log(user: User, run_id: str) -> None:
    """Every event the runner sent is stored once, in the order it was sent."""
    events = user.events(run_id)
    logs = [e for e in events if e["eventType"] == "log"]
    assert [e["message"] for e in logs] == [f"line {i}" for i in range(EVENTS)], run_id
    sequences = [e["sequence"] for e in events]
    assert sequences == sorted(set(sequences)), run_id


@pytest.fixture
def job_service(httpserver: HTTPServer, tmp_path: Path) -> Iterator[JobService]:
    artifacts = tmp_path / "runner-files"
    artifacts.mkdir()
    service = JobService(httpserver, artifacts)
    yield service
    for gate in service.gates.values():
        gate.set()
    service.pool.shutdown(wait=True, cancel_futures=True)


def test_two_hosts_behind_nginx_share_runs_events_metrics_and_survive_a_killed_host(
    app,
    database_url,
    s3_target,
    job_service,
    httpserver,
    tmp_path,
):
    base = {
        "DATABASE_URL": database_url,
        "RUNNER_AUTH_SECRET": secrets.token_urlsafe(32),  # the same on every host
        "SECRET_KEY": secrets.token_urlsafe(32),
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": s3_target.bucket,
        "S3_ENDPOINT_URL": s3_target.endpoint,
        "S3_REGION": s3_target.region,
        "RUNNER_BACKEND": "jobs",
        "DAYTONA_API_URL": f"http://127.0.0.1:{httpserver.port}",
        "TRIGGER_BACKOFF_BASE": "0.2",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_ACCESSLOG": "",
    }
    host_a = GunicornServer(host_env(base, tmp_path, "host-a"), tmp_path, "host-a")
    host_b = GunicornServer(host_env(base, tmp_path, "host-b"), tmp_path, "host-b")
    balancer = Nginx([f"127.0.0.1:{host_a.port}", f"127.0.0.1:{host_b.port}"], tmp_path)
    for host in (host_a, host_b):
        # callbackUrl: runners reach the service through the load balancer only.
        host.env["EXPO_PUBLIC_WORKER_ORIGIN"] = balancer.url
    try:
        host_a.start()
        host_b.start()
        host_a.wait_ready()
        host_b.wait_ready()
        balancer.start()
        user = User(balancer.url)

        # --- phase 1: RUNS runs through nginx, both hosts up ---------------------------------
        run_ids = [user.create(f"design {i}") for i in range(RUNS)]
        statuses = user.wait_finished(run_ids, job_service)
        assert set(statuses.values()) == {"completed"}, statuses
        for run_id in run_ids:
            check_log(user, run_id)
            (artifact,) = user.artifacts(run_id)
            assert s3_target.get(artifact["storageKey"]) == f"design for {run_id}\n".encode()
        shares = [metric(host.url, "designrun_events_ingested_total") for host in (host_a, host_b)]
        assert all(share > 0 for share in shares), shares
        assert sum(shares) == RUNS * EVENTS, shares
        runner_shares = [runner_requests(host.url) for host in (host_a, host_b)]
        assert all(share > RUNS // 4 for share in runner_shares), runner_shares
        finished = [
            metric(h.url, "designrun_runs_finished_total", status="completed")
            for h in (host_a, host_b)
        ]
        assert sum(finished) == RUNS, finished

        # --- phase 1b: a stream held through nginx (on one host) sees every event, whichever
        # host the runner's posts went through (the load balancer alternates them) -----------
        gate, halfway = job_service.hold("streamed")
        streamed = user.create("streamed")
        assert halfway.wait(TIMEOUT), job_service.errors
        auth = {"Authorization": str(user.session.headers["Authorization"])}
        live = Stream(f"{balancer.url}/api/design/runs/{streamed}/events/stream", auth, 60)
        try:
            assert live.status_code == 200
            gate.set()
            events, end = live.events_until_end()
        finally:
            live.close()
        assert end is not None and end.json()["status"] == "completed", end
        logs = [m.json()["message"] for m in events if m.json()["eventType"] == "log"]
        assert logs == [f"line {i}" for i in range(EVENTS)]
        check_log(user, streamed)

        # --- phase 2: host A dies (SIGKILL, master and workers) mid-run ----------------------
        gate, halfway = job_service.hold("survivor")
        survivor = user.create("survivor")
        assert halfway.wait(TIMEOUT), job_service.errors
        host_a.stop()
        # nginx learns that host A is gone from idempotent requests (it retries those on host B
        # and marks A failed for fail_timeout); a POST it may not retry would be a 502 instead.
        for _ in range(2):
            assert requests.get(f"{balancer.url}/livez", timeout=10).status_code == 200
        gate.set()
        later = [user.create(f"after the crash {i}") for i in range(3)]
        statuses = user.wait_finished([survivor, *later], job_service)
        assert set(statuses.values()) == {"completed"}, statuses
        for run_id in [survivor, *later]:
            check_log(user, run_id)
        assert requests.get(f"{host_b.url}/readyz", timeout=10).status_code == 200
        assert balancer.access_log.read_text().count("request_id=") > RUNS
    finally:
        balancer.stop()
        host_a.stop()
        host_b.stop()
