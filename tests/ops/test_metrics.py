"""docs/operations.md § Metrics: /metrics in Prometheus text format, optional METRICS_TOKEN.

In-process here (this process's registry, as under ``flask run``); test_gunicorn_ops.py
checks the multiprocess aggregation under gunicorn. Counters are global to the process, so the
tests compare before and after.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from designrun.services import runs
from designrun.triggers import dispatcher
from tests.factories import bearer, make_run, make_user, runner_headers
from tests.triggers.support import daytona_config, user_session

EVENTS_ROUTE = "/api/runner/runs/<uuid:run_id>/events"


def samples(client, **headers):
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.data
    assert r.content_type.startswith("text/plain")
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values, r.get_data(as_text=True)


def value(values, name, **labels):
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_template_method_and_status(app, client):
    user = make_user(app)
    run = make_run(app, user, status="running")
    before, _ = samples(client)
    headers = runner_headers(app, run)
    for _ in range(3):
        r = client.post(
            f"/api/runner/runs/{run.id}/events", json={"eventType": "log"}, headers=headers
        )
        assert r.status_code == 200
    client.post(f"/api/runner/runs/{run.id}/events", json={"eventType": ""}, headers=headers)
    after, text = samples(client)
    ok = {"route": EVENTS_ROUTE, "method": "POST", "status": "200"}
    bad = {**ok, "status": "400"}
    assert (
        value(after, "designrun_http_requests_total", **ok)
        - value(before, "designrun_http_requests_total", **ok)
        == 3
    )
    assert (
        value(after, "designrun_http_requests_total", **bad)
        - value(before, "designrun_http_requests_total", **bad)
        == 1
    )
    count = "designrun_http_request_duration_seconds_count"
    assert value(after, count, **ok) - value(before, count, **ok) == 3
    assert (
        value(after, "designrun_events_ingested_total")
        - value(before, "designrun_events_ingested_total")
        == 3
    )
    assert str(run.id) not in text, "no per-run labels"


def test_a_batch_counts_each_event(app, client):
    run = make_run(app, make_user(app), status="running")
    before, _ = samples(client)
    batch = {"events": [{"eventType": "log", "message": str(i)} for i in range(5)]}
    client.post(f"/api/runner/runs/{run.id}/events", json=batch, headers=runner_headers(app, run))
    after, _ = samples(client)
    name = "designrun_events_ingested_total"
    assert value(after, name) - value(before, name) == 5


def test_runs_created_and_finished_are_counted_by_status_and_reason(app, client):
    user = make_user(app)
    done = make_run(app, user, status="running")
    lost = make_run(app, user, status="running")
    client_, token = user_session(app)
    before, _ = samples(client)
    created = client_.post("/api/design/runs", json={"prompt": "x"}, headers=bearer(token))
    assert created.status_code == 201
    headers = runner_headers(app, done)
    for _ in range(2):  # the repeat of a terminal status changes nothing: counted once
        r = client.post(
            f"/api/runner/runs/{done.id}/status", json={"status": "completed"}, headers=headers
        )
        assert r.status_code == 200
    with app.app_context():
        assert runs.fail_run(lost.id, "the runner vanished", only_queued=False)
    after, _ = samples(client)
    created_name = "designrun_runs_created_total"
    finished = "designrun_runs_finished_total"
    assert value(after, created_name) - value(before, created_name) == 1
    completed = {"status": "completed", "reason": "none"}
    failed = {"status": "failed", "reason": "runner_exited"}
    assert value(after, finished, **completed) - value(before, finished, **completed) == 1
    assert value(after, finished, **failed) - value(before, finished, **failed) == 1


def test_trigger_attempts_failures_and_pending_triggers(app_factory, receiver):
    receiver.expect_ordered_request("/jobs", method="POST").respond_with_json({}, status=502)
    receiver.expect_ordered_request("/jobs", method="POST").respond_with_json({})
    app = app_factory(**daytona_config(receiver))
    client, token = user_session(app)
    before, _ = samples(client)
    client.post("/api/design/runs", json={"prompt": "x"}, headers=bearer(token))
    pending, _ = samples(client)
    assert value(pending, "designrun_triggers_pending") == 1
    dispatcher.run_once(app)
    after, _ = samples(client)
    attempts = "designrun_trigger_attempts_total"
    failures = "designrun_trigger_failures_total"
    assert value(after, attempts, backend="jobs") - value(before, attempts, backend="jobs") == 2
    assert value(after, failures, backend="jobs") - value(before, failures, backend="jobs") == 1
    assert value(after, "designrun_triggers_pending") == 0


def test_open_streams_gauge_follows_the_helper(client):
    from designrun import observability

    before, _ = samples(client)
    with observability.open_stream():
        during, _ = samples(client)
    after, _ = samples(client)
    name = "designrun_open_streams"
    assert value(during, name) - value(before, name) == 1
    assert value(after, name) == value(before, name)


def test_metrics_token_is_required_when_set(app_factory):
    app = app_factory(METRICS_TOKEN="t" * 40)
    client = app.test_client()
    for headers in ({}, bearer("t" * 39), bearer("t" * 41), {"Authorization": "t" * 40}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.get_json()["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"] == "Bearer"
    samples(client, Authorization=f"Bearer {'t' * 40}")
