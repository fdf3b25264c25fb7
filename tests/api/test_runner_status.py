"""API.md § POST /api/runner/runs/:runId/status and the state machine over HTTP."""

from __future__ import annotations

import uuid

import pytest

from tests.factories import legacy_headers, make_run, make_user, runner_headers


def post_status(client, app, run, body, headers=None):
    return client.post(
        f"/api/runner/runs/{run.id}/status", json=body, headers=headers or runner_headers(app, run)
    )


def test_running_sets_started_at_and_answers_run_status(app, client):
    run = make_run(app, make_user(app))
    r = post_status(client, app, run, {"status": "running", "progress": 0.25})
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"ok": True, "runStatus": "running", "progress": 0.25}
    with app.app_context():
        from designrun.extensions import db
        from designrun.models import Run

        stored = db.session.get(Run, run.id)
        assert stored.started_at is not None
        assert stored.completed_at is None


def test_terminal_status_without_progress_sets_progress_one_and_completed_at(app, client):
    run = make_run(app, make_user(app), status="running", progress=0.4)
    r = post_status(client, app, run, {"status": "completed"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["progress"] == 1
    r2 = post_status(client, app, run, {"status": "completed", "progress": 0.1})
    assert r2.status_code == 200, r2.get_json()
    assert r2.get_json() == {"ok": True, "runStatus": "completed", "progress": 1}


def test_failed_with_progress_keeps_that_progress_and_error(app, client):
    run = make_run(app, make_user(app), status="running")
    r = post_status(client, app, run, {"status": "failed", "progress": 0.5, "error": "boom"})
    assert r.get_json() == {"ok": True, "runStatus": "failed", "progress": 0.5}


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
@pytest.mark.parametrize(
    "body",
    [{"status": "running"}, {"progress": 0.5}, {"status": "other-terminal"}],
)
def test_change_on_terminal_run_is_409_with_run_status(app, client, final, body):
    run = make_run(app, make_user(app), status=final)
    if body.get("status") == "other-terminal":
        body = {"status": "failed" if final != "failed" else "completed"}
    r = post_status(client, app, run, body)
    assert r.status_code == 409, r.get_json()
    assert r.get_json() == {
        "ok": False,
        "error": r.get_json()["error"],
        "code": "run_finished",
        "runStatus": final,
    }


def test_queued_may_go_straight_to_failed(app, client):
    run = make_run(app, make_user(app))
    r = post_status(client, app, run, {"status": "failed", "error": "no image"})
    assert r.status_code == 200
    assert r.get_json()["runStatus"] == "failed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "queued"}, "status"),
        ({"status": "paused"}, "status"),
        ({"progress": True}, "progress"),
        ({"progress": "0.5"}, "progress"),
        ({}, "status"),
        ({"status": "running", "error": 5}, "error"),
        ({"status": "failed", "error": "x" * 10_001}, "error"),
    ],
)
def test_invalid_status_body_is_400_naming_the_field(app, client, body, field):
    run = make_run(app, make_user(app))
    r = post_status(client, app, run, body)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["ok"] is False
    assert r.get_json()["code"] == "invalid_request"
    assert field in r.get_json()["error"]


@pytest.mark.parametrize(
    "raw", [b'{"progress": NaN}', b'{"progress": Infinity}', b'{"progress": -Infinity}']
)
def test_nan_and_infinity_are_400(app, client, raw):
    run = make_run(app, make_user(app), status="running")
    r = client.post(
        f"/api/runner/runs/{run.id}/status",
        data=raw,
        content_type="application/json",
        headers=runner_headers(app, run),
    )
    assert r.status_code == 400, r.get_json()


@pytest.mark.parametrize(("given", "stored"), [(-3, 0), (7, 1), (0.5, 0.5), (1, 1)])
def test_progress_is_clamped(app, client, given, stored):
    run = make_run(app, make_user(app), status="running")
    r = post_status(client, app, run, {"progress": given})
    assert r.get_json()["progress"] == stored


def test_legacy_secret_works_for_any_run(app, client):
    run = make_run(app, make_user(app))
    r = post_status(client, app, run, {"status": "running"}, headers=legacy_headers(app))
    assert r.status_code == 200


def test_unknown_run_with_valid_credentials_is_404(app, client):
    missing = uuid.uuid4()
    r = client.post(
        f"/api/runner/runs/{missing}/status",
        json={"status": "running"},
        headers=runner_headers(app, missing),
    )
    assert r.status_code == 404, r.get_json()
    assert r.get_json()["ok"] is False
