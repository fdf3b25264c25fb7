"""The client against the real designrun app, served over HTTP on 127.0.0.1."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from requests.adapters import HTTPAdapter
from werkzeug.serving import make_server

from designrun.runner import RunCancelled, RunnerClient, RunnerError
from tests.factories import make_run, make_user, runner_token, sign_in

FAST: dict[str, Any] = {
    "backoff_base": 0.001,
    "backoff_cap": 0.01,
    "flush_interval": 0.01,
    "timeout": 10.0,
}


@pytest.fixture
def origin(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


class LosingAdapter(HTTPAdapter):
    """Lets the server handle every request, then loses some answers (seeded).

    Status and events answers are lost at random; the first answer of every artifact request is
    always lost, so each registration and upload is retried (the idempotency key keeps one).
    """

    def __init__(self, seed: int, rate: float) -> None:
        super().__init__()
        self.random = random.Random(seed)
        self.rate = rate
        self.lost = 0
        self.artifact_requests = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        response = super().send(request, *args, **kwargs)
        url = request.url or ""
        lose = url.endswith(("/events", "/status")) and self.random.random() < self.rate
        if url.endswith("/artifacts"):
            self.artifact_requests += 1
            lose = self.artifact_requests % 2 == 1  # the first attempt of each
        if lose:
            self.lost += 1
            response.close()
            raise requests.ConnectionError("the answer was lost")
        return response


def test_a_run_reported_through_the_client_is_what_the_user_sees(
    app: Flask, client: FlaskClient, origin: str, tmp_path: Path
) -> None:
    user = make_user(app)
    run = make_run(app, user, status="queued")
    job = {
        "runId": str(run.id),
        "callbackUrl": f"{origin}/api/runner/runs/{run.id}",
        "runnerSecret": runner_token(app, run.id),
        "runnerToken": runner_token(app, run.id),
    }
    adapter = LosingAdapter(seed=7, rate=0.3)
    session = requests.Session()
    session.mount("http://", adapter)
    page = tmp_path / "index.html"
    page.write_bytes(b"<h1>bakery</h1>" * 1000)

    with session, RunnerClient.from_job(job, session=session, batch_size=20, **FAST) as runner:
        assert runner.set_status("running", progress=0.1)["runStatus"] == "running"
        for i in range(250):
            runner.event("log", f"line {i}", {"i": i})
        runner.set_progress(0.5)
        registered = runner.register_artifact("image", "elsewhere/hero.png", size_bytes=10)
        uploaded = runner.upload_artifact(page, "site", metadata={"pages": 1})
        runner.refresh_token()
        runner.event("log", "after refresh")
        runner.set_status("completed")
        assert runner.run_status == "completed" and not runner.cancelled
    assert adapter.lost > 0  # answers were lost, and nothing below is duplicated
    assert adapter.artifact_requests == 4  # each artifact request was sent twice

    sign_in(client, user)
    r = client.get(f"/api/design/runs/{run.id}")
    assert r.status_code == 200, r.get_json()
    assert (r.get_json()["run"]["status"], r.get_json()["run"]["progress"]) == ("completed", 1.0)
    # The final status carried eventCount (API.md § Log completeness): the log is complete.
    assert (r.get_json()["run"]["eventCount"], r.get_json()["run"]["logComplete"]) == (251, True)
    r = client.get(f"/api/design/runs/{run.id}/events?limit=1000")
    events = r.get_json()["events"]
    assert [e["message"] for e in events] == [f"line {i}" for i in range(250)] + ["after refresh"]
    assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)
    r = client.get(f"/api/design/runs/{run.id}/artifacts")
    artifacts = r.get_json()["artifacts"]
    by_id = {a["id"]: a for a in artifacts}
    assert set(by_id) == {registered["artifactId"], uploaded["artifactId"]}
    site = by_id[uploaded["artifactId"]]
    assert (site["contentType"], site["sizeBytes"], site["metadata"]) == (
        "text/html",
        page.stat().st_size,
        {"pages": 1},
    )
    stored = Path(app.config["STORAGE_LOCAL_DIR"]) / uploaded["storageKey"]
    assert stored.read_bytes() == page.read_bytes()


def test_a_cancelled_run_and_a_foreign_token_against_the_app(app: Flask, origin: str) -> None:
    user = make_user(app)
    cancelled = make_run(app, user, status="cancelled")
    other = make_run(app, user, status="running")
    url = f"{origin}/api/runner/runs/{cancelled.id}"

    with RunnerClient(url, runner_token(app, cancelled.id), **FAST) as runner:
        with pytest.raises(RunCancelled) as info:
            runner.set_status("running")
        assert info.value.run_status == "cancelled" and runner.cancelled
        assert runner.set_status("cancelled")["runStatus"] == "cancelled"

    with RunnerClient(url, runner_token(app, other.id), **FAST) as runner:
        with pytest.raises(RunnerError) as error:
            runner.set_progress(0.5)
        assert (error.value.status, error.value.code) == (401, "unauthorized")


def test_files_above_the_threshold_go_through_a_direct_upload_url(
    app: Flask, client: FlaskClient, origin: str, tmp_path: Path
) -> None:
    user = make_user(app)
    run = make_run(app, user, status="running")
    big, small = tmp_path / "walkthrough.webm", tmp_path / "notes.txt"
    big.write_bytes(bytes(range(256)) * 8000)
    small.write_bytes(b"short")
    url = f"{origin}/api/runner/runs/{run.id}"
    with RunnerClient(url, runner_token(app, run.id), direct_upload_threshold=1000, **FAST) as rc:
        direct = rc.upload_artifact(big, "video", metadata={"seconds": 3})
        multipart = rc.upload_artifact(small, "notes")
    assert direct["storageKey"].startswith(f"runs/{run.id}/")
    assert direct["sizeBytes"] == big.stat().st_size  # from the store
    stored = Path(app.config["STORAGE_LOCAL_DIR"]) / direct["storageKey"]
    assert stored.read_bytes() == big.read_bytes()
    sign_in(client, user)
    artifacts = client.get(f"/api/design/runs/{run.id}/artifacts").get_json()["artifacts"]
    by_id = {a["id"]: a for a in artifacts}
    assert by_id[direct["artifactId"]]["contentType"] == "video/webm"
    assert by_id[direct["artifactId"]]["metadata"] == {"seconds": 3}
    assert by_id[multipart["artifactId"]]["sizeBytes"] == 5
