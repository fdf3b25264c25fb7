"""API.md § Trigger retries: non-2xx and network errors are retried with backoff, then the run
fails with an ``error`` event saying why."""

from __future__ import annotations

import itertools
import time

import pytest
from werkzeug import Response

from designrun.models.types import utcnow
from designrun.triggers import dispatcher
from tests.factories import runner_headers
from tests.triggers.support import (
    closed_port,
    create_run,
    daytona_config,
    get_events,
    get_run,
    trigger_rows,
    user_session,
    wait_for,
)


@pytest.mark.parametrize(("status", "attempts"), [(500, 5), (503, 3), (401, 5)])
def test_non_2xx_is_retried_max_attempts_then_run_failed_with_error_event(
    daytona, app_factory, status, attempts
):
    daytona.expect_request("/jobs", method="POST").respond_with_data("down", status=status)
    overrides = {} if attempts == 5 else {"TRIGGER_MAX_ATTEMPTS": attempts}
    app = app_factory(**daytona_config(daytona, **overrides))
    assert app.config["TRIGGER_MAX_ATTEMPTS"] == attempts
    client, token = user_session(app)
    run = create_run(client, token)

    dispatcher.run_once(app)

    assert len(daytona.log) == attempts
    assert {request.get_json()["runId"] for request, _ in daytona.log} == {run["id"]}
    stored = get_run(client, token, run["id"])
    assert stored["status"] == "failed", stored
    assert f"HTTP {status}" in stored["error"]
    assert f"{attempts} attempts" in stored["error"]
    assert stored["completedAt"] is not None
    assert stored["failureReason"] == "dispatch_failed"
    assert stored["dispatch"]["backend"] == "jobs" and stored["dispatch"]["state"] == "failed"
    assert stored["dispatch"]["attempts"] == attempts
    assert f"HTTP {status}" in stored["dispatch"]["lastError"]
    assert [(t["from"], t["to"], t["by"], t["reason"]) for t in stored["transitions"]] == [
        ("queued", "failed", "system", "dispatch_failed")
    ]
    events = get_events(client, token, run["id"])
    assert [e["eventType"] for e in events] == ["error"]
    assert f"HTTP {status}" in events[0]["message"]
    assert trigger_rows(app) == []


def test_connection_refused_is_retried_then_run_failed_saying_unreachable(app_factory, monkeypatch):
    sent = []
    real_send = dispatcher.send_job

    def counting_send(*args, **kwargs):
        sent.append(args[1].id)
        return real_send(*args, **kwargs)

    monkeypatch.setattr(dispatcher, "send_job", counting_send)
    app = app_factory(
        DAYTONA_API_URL=f"http://127.0.0.1:{closed_port()}",
        DAYTONA_API_KEY="dk",
        TRIGGER_BACKOFF_BASE=0.01,
    )
    client, token = user_session(app)
    run = create_run(client, token)

    dispatcher.run_once(app)

    assert len(sent) == 5
    stored = get_run(client, token, run["id"])
    assert stored["status"] == "failed", stored
    assert "could not be reached" in stored["error"]
    assert "5 attempts" in stored["error"]
    events = get_events(client, token, run["id"])
    assert [e["eventType"] for e in events] == ["error"]
    assert "could not be reached" in events[0]["message"]
    assert trigger_rows(app) == []


def test_hanging_daytona_counts_as_a_failed_attempt(daytona, app_factory):
    def hang(request):
        time.sleep(1.0)
        return Response("{}", status=200, content_type="application/json")

    daytona.expect_request("/jobs", method="POST").respond_with_handler(hang)
    app = app_factory(**daytona_config(daytona, TRIGGER_TIMEOUT=0.3, TRIGGER_MAX_ATTEMPTS=1))
    client, token = user_session(app)
    run = create_run(client, token)

    dispatcher.run_once(app)

    stored = get_run(client, token, run["id"])
    assert stored["status"] == "failed", stored
    assert "Timeout" in stored["error"]
    assert wait_for(lambda: len(daytona.log) == 1)


def test_two_failures_then_success_keeps_run_queued_after_three_requests(daytona, app_factory):
    daytona.expect_oneshot_request("/jobs", method="POST").respond_with_data("x", status=500)
    daytona.expect_oneshot_request("/jobs", method="POST").respond_with_data("x", status=502)
    daytona.expect_request("/jobs", method="POST").respond_with_json({"id": "job-1"})
    app = app_factory(**daytona_config(daytona))
    client, token = user_session(app)
    run = create_run(client, token)

    dispatcher.run_once(app)

    assert [response.status_code for _, response in daytona.log] == [500, 502, 200]
    stored = get_run(client, token, run["id"])
    assert stored["status"] == "queued", stored
    assert stored["error"] is None
    assert get_events(client, token, run["id"]) == []
    assert trigger_rows(app) == []


def test_retries_with_started_dispatcher_send_until_success(daytona, app_factory):
    daytona.expect_oneshot_request("/jobs", method="POST").respond_with_data("x", status=500)
    daytona.expect_oneshot_request("/jobs", method="POST").respond_with_data("x", status=500)
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    app = app_factory(**daytona_config(daytona))
    dispatcher.start(app)
    client, token = user_session(app)
    run = create_run(client, token)

    assert wait_for(lambda: len(daytona.log) == 3 and trigger_rows(app) == [])
    assert get_run(client, token, run["id"])["status"] == "queued"


def test_run_cancelled_between_attempts_is_not_sent_again(daytona, app_factory):
    app = app_factory(**daytona_config(daytona))
    client, token = user_session(app)
    run = create_run(client, token)

    def cancel_then_fail(request):
        r = app.test_client().post(
            f"/api/runner/runs/{run['id']}/status",
            json={"status": "cancelled"},
            headers=runner_headers(app, run["id"]),
        )
        assert r.status_code == 200, r.get_json()
        return Response("down", status=500)

    daytona.expect_request("/jobs", method="POST").respond_with_handler(cancel_then_fail)

    dispatcher.run_once(app)

    assert len(daytona.log) == 1
    stored = get_run(client, token, run["id"])
    assert stored["status"] == "cancelled", stored
    assert stored["error"] is None
    assert get_events(client, token, run["id"]) == []
    assert trigger_rows(app) == []


def test_backoff_doubles_from_the_base(app_factory):
    app = app_factory(TRIGGER_BACKOFF_BASE=0.5)
    assert [dispatcher.backoff(app, n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_default_backoff_is_1_2_4_8_seconds(app_factory):
    app = app_factory()
    assert app.config["TRIGGER_BACKOFF_BASE"] == 1.0
    assert [dispatcher.backoff(app, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


def test_attempts_are_spaced_by_backoff_and_recorded_in_the_trigger_row(daytona, app_factory):
    seen = []

    def failing(request):
        seen.append((time.monotonic(), trigger_rows(app)))
        return Response("down", status=500)

    daytona.expect_request("/jobs", method="POST").respond_with_handler(failing)
    app = app_factory(**daytona_config(daytona, TRIGGER_BACKOFF_BASE=0.05))
    client, token = user_session(app)
    run = create_run(client, token)

    dispatcher.run_once(app)

    assert len(seen) == 5
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(seen)]
    for gap, delay in zip(gaps, [0.05, 0.1, 0.2, 0.4], strict=True):
        assert gap >= delay, gaps
    for attempt, (_, rows) in enumerate(seen):
        (row,) = rows
        assert row.attempts == attempt
        assert row.claimed_until is not None and row.claimed_until > utcnow()
        assert (row.last_error is None) == (attempt == 0)
    assert "HTTP 500" in seen[-1][1][0].last_error
    assert get_run(client, token, run["id"])["status"] == "failed"
