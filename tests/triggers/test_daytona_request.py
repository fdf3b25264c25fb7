"""API.md § The Daytona job request: what is sent, to where, with which credentials."""

from __future__ import annotations

import uuid

import jwt
import pytest

from designrun.triggers import dispatcher
from tests.factories import make_run, make_user
from tests.triggers.support import API_KEY, create_run, daytona_config, jobs, user_session

JOB_FIELDS = {
    "runId",
    "accountId",
    "prompt",
    "config",
    "callbackUrl",
    "runnerSecret",
    "runnerToken",
}


def test_job_is_posted_to_jobs_with_bearer_key_and_exact_body(daytona, app_factory):
    daytona.expect_request(
        "/jobs",
        method="POST",
        headers={"Authorization": f"Bearer {API_KEY}"},
    ).respond_with_json({"id": "job-1"}, status=201)
    app = app_factory(
        **daytona_config(
            daytona,
            DAYTONA_API_URL=daytona.url_for("/"),  # a trailing slash must not give //jobs
            EXPO_PUBLIC_WORKER_ORIGIN="https://worker.example.com",
        )
    )
    client, token = user_session(app)
    run = create_run(client, token, prompt="a poster for a jazz night", config={"style": "bold"})

    assert dispatcher.run_once(app) == 1

    assert len(daytona.log) == 1
    request, response = daytona.log[0]
    assert response.status_code == 201
    assert request.path == "/jobs"
    assert request.mimetype == "application/json"
    assert request.headers["Idempotency-Key"] == run["id"]
    body = request.get_json()
    # API.md's fields, and the create request's X-Request-ID (docs/operations.md).
    assert set(body) == JOB_FIELDS | {"requestId"}
    assert body["requestId"] == request.headers["X-Request-ID"]
    assert body["runId"] == run["id"]
    assert body["accountId"] == run["accountId"]
    assert body["prompt"] == "a poster for a jazz night"
    assert body["config"] == {"style": "bold"}
    assert body["callbackUrl"] == f"https://worker.example.com/api/runner/runs/{run['id']}"


def test_runner_secret_is_the_run_scoped_token_not_the_shared_secret(daytona, app_factory):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    app = app_factory(**daytona_config(daytona, RUNNER_TOKEN_TTL=900))
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)

    (body,) = jobs(daytona)
    assert body["runnerSecret"] == body["runnerToken"]
    runner_token = body["runnerToken"]
    secret = app.config["RUNNER_AUTH_SECRET"]
    assert runner_token != secret
    assert secret not in str(body)
    assert jwt.get_unverified_header(runner_token)["alg"] == "HS256"
    claims = jwt.decode(runner_token, secret, algorithms=["HS256"])
    assert claims["sub"] == run["id"]
    assert claims["scope"] == "runner"
    assert claims["exp"] - claims["iat"] == 900


def test_runner_token_from_job_works_on_its_run_and_is_401_on_another(daytona, app_factory):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    app = app_factory(**daytona_config(daytona))
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)
    (body,) = jobs(daytona)
    headers = {"Authorization": f"Bearer {body['runnerSecret']}"}

    r = client.post(
        f"/api/runner/runs/{run['id']}/events", json={"eventType": "log"}, headers=headers
    )
    assert r.status_code == 200, r.get_json()
    r = client.post(
        f"/api/runner/runs/{run['id']}/status", json={"status": "running"}, headers=headers
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["runStatus"] == "running"

    other = make_run(app, make_user(app))
    r = client.post(f"/api/runner/runs/{other.id}/status", json={"progress": 0.5}, headers=headers)
    assert r.status_code == 401, r.get_json()
    assert r.get_json()["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("origin", ["https://worker.example.com", "https://worker.example.com/"])
def test_callback_url_has_no_double_slash_when_origin_ends_with_slash(daytona, app_factory, origin):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    app = app_factory(**daytona_config(daytona, EXPO_PUBLIC_WORKER_ORIGIN=origin))
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)

    (body,) = jobs(daytona)
    assert body["callbackUrl"] == f"https://worker.example.com/api/runner/runs/{run['id']}"


def test_callback_url_without_worker_origin_uses_the_create_request_origin(daytona, app_factory):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    app = app_factory(**daytona_config(daytona))
    client, token = user_session(app)
    run = create_run(client, token, base_url="https://designrun.example:8443")
    dispatcher.run_once(app)

    (body,) = jobs(daytona)
    assert body["callbackUrl"] == f"https://designrun.example:8443/api/runner/runs/{run['id']}"


def test_omitted_config_is_sent_as_empty_object(daytona, app_factory):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    app = app_factory(**daytona_config(daytona))
    client, token = user_session(app)
    run = create_run(client, token)
    assert run["config"] == {}
    dispatcher.run_once(app)

    (body,) = jobs(daytona)
    assert body["config"] == {}
    assert uuid.UUID(body["runId"]) == uuid.UUID(run["id"])
