"""docs/operations.md § Request ids and logs: X-Request-ID in and out, in every log line of the
request, handed to the runner with its job and sent back by designrun.runner; JSON log lines;
secrets never logged."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys

import pytest

from designrun import observability
from designrun.runner.client import RunnerClient
from designrun.triggers import dispatcher
from designrun.triggers import local as local_backend
from tests.factories import PASSWORD, bearer, make_run, make_user, runner_headers, sign_in
from tests.triggers.support import create_run, daytona_config, jobs, user_session

NEW_ID = re.compile(r"[0-9a-f]{32}")


def test_every_response_carries_a_new_request_id(client):
    first = client.get("/livez").headers["X-Request-ID"]
    second = client.get("/api/no-such-thing").headers["X-Request-ID"]
    assert NEW_ID.fullmatch(first) and NEW_ID.fullmatch(second)
    assert first != second


def test_a_sane_client_request_id_is_kept_on_success_and_error(client):
    r = client.get("/livez", headers={"X-Request-ID": "lb-7f3a.42:edge"})
    assert r.headers["X-Request-ID"] == "lb-7f3a.42:edge"
    r = client.get("/api/design/runs", headers={"X-Request-ID": "abc-401"})
    assert r.status_code == 401
    assert r.headers["X-Request-ID"] == "abc-401"


@pytest.mark.parametrize(
    "sent", ["", " spaced out ", "x" * 129, "new\\nline", "<script>", "-leading-dash", "é"]
)
def test_an_insane_client_request_id_is_replaced(client, sent):
    r = client.get("/livez", headers={"X-Request-ID": sent})
    assert NEW_ID.fullmatch(r.headers["X-Request-ID"]), r.headers["X-Request-ID"]


@pytest.fixture
def captured():
    """Every log record of the test as the service formats it (text), at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.formatter("text"))
    handler.addFilter(observability.RequestIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def _logging_app(app):
    @app.get("/_log_twice")
    def _log_twice():
        logging.getLogger("designrun.test").info("first line")
        logging.getLogger("somelib").warning("second line")
        return {"ok": True}

    return app


def test_every_log_line_of_a_request_carries_its_id(app, captured):
    client = _logging_app(app).test_client()
    client.get("/_log_twice", headers={"X-Request-ID": "follow-me-1"})
    lines = [line for line in captured.getvalue().splitlines() if "line" in line]
    assert len(lines) == 2, captured.getvalue()
    assert all("[follow-me-1]" in line for line in lines), lines
    logging.getLogger("designrun.test").info("outside a request")
    assert "[-] outside a request" in captured.getvalue()


def test_json_log_format_gives_one_object_per_line_with_the_request_id(app):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.formatter("json"))
    handler.addFilter(observability.RequestIdFilter())
    logger = logging.getLogger("designrun.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        _logging_app(app).test_client().get("/_log_twice", headers={"X-Request-ID": "j-1"})
        logger.info("with fields", extra={"run_id": "r-1"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records[0]["message"] == "first line"
    assert records[0]["request_id"] == "j-1"
    assert records[0]["level"] == "INFO" and records[0]["logger"] == "designrun.test"
    assert records[1]["run_id"] == "r-1" and records[1]["request_id"] == "-"


def test_log_format_setting_is_checked(monkeypatch):
    from designrun.config import ConfigError, load_config

    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_config("/tmp")


def test_the_request_id_travels_with_the_job_request(daytona_app):
    app, daytona = daytona_app
    client, token = user_session(app)
    r = client.post(
        "/api/design/runs",
        json={"prompt": "a bakery"},
        headers={**bearer(token), "X-Request-ID": "create-77"},
    )
    assert r.status_code == 201
    dispatcher.run_once(app)
    assert jobs(daytona)[0]["requestId"] == "create-77"
    request, _ = daytona.log[0]
    assert request.headers["X-Request-ID"] == "create-77"


@pytest.fixture
def daytona_app(app_factory, receiver):
    receiver.expect_request("/jobs", method="POST").respond_with_json({})
    return app_factory(**daytona_config(receiver)), receiver


def test_the_local_runner_gets_the_request_id_in_its_environment(app_factory, monkeypatch):
    app = app_factory(RUNNER_BACKEND="local", LOCAL_RUNNER_ORIGIN="http://127.0.0.1:9")
    seen: list[dict[str, str]] = []

    def fake_popen(command, **kwargs):
        seen.append(kwargs["env"])
        return subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)

    monkeypatch.setattr(local_backend.subprocess, "Popen", fake_popen)
    client, token = user_session(app)
    client.post(
        "/api/design/runs",
        json={"prompt": "a bakery"},
        headers={**bearer(token), "X-Request-ID": "local-5"},
    )
    dispatcher.run_once(app)
    assert seen and seen[0]["DESIGNRUN_REQUEST_ID"] == "local-5"
    assert "RUNNER_AUTH_SECRET" not in seen[0]


def test_the_runner_client_sends_the_request_id_back_on_callbacks(receiver):
    run_id = "0190a7e2-0000-7000-8000-000000000001"
    receiver.expect_request(f"/api/runner/runs/{run_id}/status").respond_with_json(
        {"ok": True, "runStatus": "running", "progress": 0}
    )
    job = {
        "runId": run_id,
        "callbackUrl": f"http://127.0.0.1:{receiver.port}/api/runner/runs/{run_id}",
        "runnerToken": "tok-" + "x" * 40,
        "requestId": "create-99",
    }
    with RunnerClient.from_job(job) as client:
        client.set_status("running")
    request, _ = receiver.log[0]
    assert request.headers["X-Request-ID"] == "create-99"


def test_secrets_and_tokens_never_reach_the_logs(app_factory, receiver, captured):
    receiver.expect_request("/jobs", method="POST").respond_with_json({}, status=500)
    app = app_factory(**daytona_config(receiver, TRIGGER_MAX_ATTEMPTS=1), METRICS_TOKEN="m" * 40)
    user = make_user(app)
    client = app.test_client()
    session_token = sign_in(client, user)
    client.post("/api/auth/sign-in/email", json={"email": user.email, "password": "wrong-" * 3})
    run = create_run(client, session_token)
    dispatcher.run_once(app)  # the job request fails: logged, with its error
    running = make_run(app, user, status="running")
    headers = runner_headers(app, running)
    client.post(f"/api/runner/runs/{running.id}/events", json={"eventType": "x"}, headers=headers)
    client.post(f"/api/runner/runs/{running.id}/status", json={"status": "bogus"}, headers=headers)
    client.get("/metrics", headers=bearer("wrong-metrics-token"))
    client.get("/metrics", headers=bearer("m" * 40))
    logs = captured.getvalue()
    assert run["id"] in logs, "the capture works: the failed trigger was logged"
    for secret in (
        PASSWORD,
        "wrong-wrong-wrong-",
        session_token,
        headers["Authorization"].split()[1],
        app.config["RUNNER_AUTH_SECRET"],
        app.config["SECRET_KEY"],
        app.config["DAYTONA_API_KEY"],
        "m" * 40,
        "wrong-metrics-token",
    ):
        assert secret not in logs, secret
