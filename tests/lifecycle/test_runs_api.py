"""API.md Part 2 § Run lifecycle over HTTP: the new Run fields, transitions, cancel, retry."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from designrun.extensions import db
from designrun.models import RunTransition
from designrun.services import hooks
from tests.factories import bearer, make_run, make_user, runner_headers, sign_in


@pytest.fixture
def user(app):
    return make_user(app)


@pytest.fixture
def token(client, user):
    return sign_in(client, user)


def get(client, token, run_id):
    r = client.get(f"/api/design/runs/{run_id}", headers=bearer(token))
    assert r.status_code == 200, r.get_json()
    return r.get_json()["run"]


def status(client, app, run_id, body):
    return client.post(
        f"/api/runner/runs/{run_id}/status", json=body, headers=runner_headers(app, run_id)
    )


def events(client, app, run_id, n):
    body = {"events": [{"eventType": "log", "idempotencyKey": f"k{i}"} for i in range(n)]}
    r = client.post(
        f"/api/runner/runs/{run_id}/events", json=body, headers=runner_headers(app, run_id)
    )
    assert r.status_code == 200, r.get_json()


def cancel(client, token, run_id, **kwargs):
    return client.post(f"/api/design/runs/{run_id}/cancel", headers=bearer(token), **kwargs)


def test_new_run_has_lifecycle_fields_and_no_transitions(client, token):
    r = client.post("/api/design/runs", json={"prompt": "p"}, headers=bearer(token))
    run = r.get_json()["run"]
    assert run["failureReason"] is None and run["lastHeartbeatAt"] is None
    assert run["retryOf"] is None and run["eventCount"] == 0 and run["logComplete"] is None
    # the test app has RUNNER_BACKEND=none: nothing is dispatched
    assert run["dispatch"] == {"backend": None, "state": "none", "attempts": 0, "lastError": None}
    assert get(client, token, run["id"])["transitions"] == []
    listed = client.get("/api/design/runs", headers=bearer(token)).get_json()["runs"][0]
    assert "transitions" not in listed and listed["eventCount"] == 0


def test_runner_failure_is_agent_error_with_transitions_oldest_first(app, client, user, token):
    run = make_run(app, user)
    assert status(client, app, run.id, {"status": "running"}).status_code == 200
    assert status(client, app, run.id, {"progress": 0.5}).status_code == 200
    r = status(client, app, run.id, {"status": "failed", "error": "model refused"})
    assert r.status_code == 200, r.get_json()
    got = get(client, token, run.id)
    assert got["status"] == "failed" and got["failureReason"] == "agent_error"
    assert got["lastHeartbeatAt"] is not None
    steps = [(t["from"], t["to"], t["by"], t["reason"]) for t in got["transitions"]]
    assert steps == [
        ("queued", "running", "runner", None),
        ("running", "failed", "runner", "agent_error"),
    ]
    assert all(t["at"].endswith("Z") for t in got["transitions"])


def test_event_count_and_log_completeness(app, client, user, token):
    run = make_run(app, user, status="running")
    events(client, app, run.id, 3)
    assert get(client, token, run.id)["lastHeartbeatAt"] is not None
    r = status(client, app, run.id, {"status": "completed", "eventCount": 4})
    assert r.status_code == 200, r.get_json()
    got = get(client, token, run.id)
    assert got["eventCount"] == 3 and got["logComplete"] is False
    events(client, app, run.id, 4)  # the late line (k3), and three retries that store nothing
    got = get(client, token, run.id)
    assert got["eventCount"] == 4 and got["logComplete"] is True


def test_completed_without_event_count_has_log_complete_null(app, client, user, token):
    run = make_run(app, user, status="running")
    assert status(client, app, run.id, {"status": "completed"}).status_code == 200
    assert get(client, token, run.id)["logComplete"] is None


@pytest.mark.parametrize("count", [-1, 1.5, "3", True])
def test_bad_event_count_is_400_and_changes_nothing(app, client, user, token, count):
    run = make_run(app, user, status="running")
    r = status(client, app, run.id, {"status": "completed", "eventCount": count})
    assert r.status_code == 400, r.get_json()
    assert get(client, token, run.id)["status"] == "running"


def test_cancel_a_running_run(app, client, user, token):
    run = make_run(app, user, status="running")
    r = cancel(client, token, run.id, json={"reason": "wrong prompt"})
    assert r.status_code == 200, r.get_json()
    got = r.get_json()["run"]
    assert got["status"] == "cancelled" and got["failureReason"] == "cancelled_by_user"
    assert got["completedAt"] is not None
    assert [(t["from"], t["to"], t["by"]) for t in got["transitions"]] == [
        ("running", "cancelled", "user")
    ]
    log = client.get(f"/api/design/runs/{run.id}/events", headers=bearer(token)).get_json()
    assert [(e["eventType"], e["message"]) for e in log["events"]] == [
        ("run.cancelled", "cancelled by the user: wrong prompt")
    ]
    # the runner learns it from its next call
    r = status(client, app, run.id, {"progress": 0.7})
    assert r.status_code == 409 and r.get_json()["runStatus"] == "cancelled"
    # cancelling again is an idempotent 200 and records nothing more
    r = cancel(client, token, run.id)
    assert r.status_code == 200 and len(r.get_json()["run"]["transitions"]) == 1


def test_cancel_of_a_finished_run_is_409_with_its_status(app, client, user, token):
    run = make_run(app, user, status="completed")
    r = cancel(client, token, run.id)
    assert r.status_code == 409, r.get_json()
    assert r.get_json()["code"] == "run_finished" and r.get_json()["runStatus"] == "completed"


def test_cancel_and_retry_of_another_accounts_run_are_404(app, client, token):
    other = make_run(app, make_user(app), status="failed")
    assert cancel(client, token, other.id).status_code == 404
    r = client.post(f"/api/design/runs/{other.id}/retry", headers=bearer(token))
    assert r.status_code == 404
    assert cancel(client, token, uuid.uuid4()).status_code == 404


def test_cancel_over_a_cookie_from_a_foreign_origin_is_403(app, client, user):
    sign_in(client, user)  # the client keeps the cookie
    run = make_run(app, user, status="running")
    r = client.post(
        f"/api/design/runs/{run.id}/cancel", headers={"Origin": "https://evil.example.com"}
    )
    assert r.status_code == 403, r.get_json()
    r = client.get(f"/api/design/runs/{run.id}")
    assert r.get_json()["run"]["status"] == "running"


def test_cancel_with_a_bad_body_is_400(app, client, user, token):
    run = make_run(app, user, status="running")
    assert cancel(client, token, run.id, json={"reason": 5}).status_code == 400
    assert cancel(client, token, run.id, json=[1]).status_code == 400
    assert get(client, token, run.id)["status"] == "running"


def test_retry_creates_a_new_run_with_the_same_prompt_and_config(app, client, user, token):
    run = make_run(app, user, status="failed", prompt="a tea shop", config={"pages": 2})
    r = client.post(f"/api/design/runs/{run.id}/retry", headers=bearer(token))
    assert r.status_code == 201, r.get_json()
    new = r.get_json()["run"]
    assert new["id"] != str(run.id) and new["retryOf"] == str(run.id)
    assert (new["prompt"], new["config"], new["status"]) == ("a tea shop", {"pages": 2}, "queued")


def test_retry_of_an_active_run_is_409_run_active(app, client, user, token):
    run = make_run(app, user, status="running")
    r = client.post(f"/api/design/runs/{run.id}/retry", headers=bearer(token))
    assert r.status_code == 409 and r.get_json()["code"] == "run_active", r.get_json()


def test_delete_of_an_active_run_goes_through_cancel(app, client, user, token):
    seen: list[hooks.TransitionInfo] = []
    hooks.after_transition(seen.append)
    try:
        run = make_run(app, user, status="running")
        r = client.delete(f"/api/design/runs/{run.id}", headers=bearer(token))
        assert r.status_code == 200, r.get_json()
    finally:
        hooks._reset_for_tests()["after_commit"].remove(seen.append)
    assert [(i.run_id, i.to_status, i.by, i.reason) for i in seen] == [
        (run.id, "cancelled", "user", "cancelled_by_user")
    ]


def test_a_failing_in_transaction_hook_rolls_the_change_back(app, client, user, token):
    def refuse(run, transition):
        raise RuntimeError("hook says no")

    hooks.on_transition(refuse)
    try:
        run = make_run(app, user, status="running")
        with pytest.raises(RuntimeError):
            cancel(client, token, run.id)
    finally:
        hooks._reset_for_tests()["in_transaction"].remove(refuse)
    assert get(client, token, run.id)["status"] == "running"
    with app.app_context():
        assert db.session.scalars(select(RunTransition)).all() == []
