"""API.md § POST /api/runner/runs/:runId/events, and tailing them as a user."""

from __future__ import annotations

import pytest

from tests.factories import make_run, make_user, runner_headers, sign_in


def post_events(client, app, run, body, **kwargs):
    return client.post(
        f"/api/runner/runs/{run.id}/events", json=body, headers=runner_headers(app, run), **kwargs
    )


def stored_events(app, run):
    from sqlalchemy import select

    from designrun.extensions import db
    from designrun.models import RunEvent

    with app.app_context():
        rows = db.session.scalars(
            select(RunEvent).where(RunEvent.run_id == run.id).order_by(RunEvent.sequence)
        ).all()
        return [(str(e.id), e.sequence, e.event_type, e.message, e.idempotency_key) for e in rows]


def test_single_event_is_stored_with_defaults_and_answers_its_id(app, client):
    run = make_run(app, make_user(app), status="running")
    r = post_events(client, app, run, {"eventType": "log"})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["ok"] is True and body["runStatus"] == "running"
    assert stored_events(app, run) == [(body["eventId"], 1, "log", None, None)]


def test_batch_is_stored_in_order_with_increasing_sequences(app, client):
    run = make_run(app, make_user(app), status="running")
    post_events(client, app, run, {"eventType": "first"})
    events = [{"eventType": "log", "message": f"line {i}"} for i in range(50)]
    r = post_events(client, app, run, {"events": events})
    assert r.status_code == 200, r.get_json()
    ids = r.get_json()["eventIds"]
    stored = stored_events(app, run)
    assert [s[0] for s in stored[1:]] == ids
    assert [s[1] for s in stored] == list(range(1, 52))
    assert [s[3] for s in stored[1:]] == [f"line {i}" for i in range(50)]


def test_batch_of_1000_is_accepted_and_1001_is_rejected_whole(app, client):
    run = make_run(app, make_user(app), status="running")
    r = post_events(client, app, run, {"events": [{"eventType": "x"}] * 1000})
    assert r.status_code == 200, r.get_json()
    assert len(r.get_json()["eventIds"]) == 1000
    r = post_events(client, app, run, {"events": [{"eventType": "x"}] * 1001})
    assert r.status_code == 400, r.get_json()
    assert "events" in r.get_json()["error"]
    assert len(stored_events(app, run)) == 1000


def test_batch_with_one_invalid_event_stores_nothing_and_names_it(app, client):
    run = make_run(app, make_user(app), status="running")
    events = [{"eventType": "ok"}, {"eventType": "ok"}, {"eventType": ""}]
    r = post_events(client, app, run, {"events": events})
    assert r.status_code == 400, r.get_json()
    assert "events[2].eventType" in r.get_json()["error"]
    assert stored_events(app, run) == []


def test_retry_with_same_idempotency_key_returns_original_id_and_stores_once(app, client):
    run = make_run(app, make_user(app), status="running")
    first = post_events(
        client, app, run, {"eventType": "log", "message": "a", "idempotencyKey": "k"}
    )
    again = post_events(
        client, app, run, {"eventType": "other", "message": "b", "idempotencyKey": "k"}
    )
    assert again.status_code == 200
    assert again.get_json()["eventId"] == first.get_json()["eventId"]
    assert stored_events(app, run) == [(first.get_json()["eventId"], 1, "log", "a", "k")]


def test_same_key_twice_in_one_batch_is_stored_once_and_both_get_its_id(app, client):
    run = make_run(app, make_user(app), status="running")
    events = [
        {"eventType": "log", "idempotencyKey": "a"},
        {"eventType": "log", "idempotencyKey": "b"},
        {"eventType": "log", "idempotencyKey": "a"},
        {"eventType": "log"},
    ]
    ids = post_events(client, app, run, {"events": events}).get_json()["eventIds"]
    assert ids[0] == ids[2] and len(set(ids)) == 3
    stored = stored_events(app, run)
    assert [s[0] for s in stored] == [ids[0], ids[1], ids[3]]
    assert [s[1] for s in stored] == [1, 2, 3]


def test_batch_retry_after_timeout_does_not_duplicate(app, client):
    run = make_run(app, make_user(app), status="running")
    batch = {"events": [{"eventType": "log", "idempotencyKey": f"k{i}"} for i in range(10)]}
    first = post_events(client, app, run, batch).get_json()["eventIds"]
    second = post_events(client, app, run, batch).get_json()["eventIds"]
    assert first == second
    assert len(stored_events(app, run)) == 10


def test_idempotency_keys_are_per_run(app, client):
    user = make_user(app)
    run_a, run_b = make_run(app, user, status="running"), make_run(app, user, status="running")
    a = post_events(client, app, run_a, {"eventType": "log", "idempotencyKey": "k"})
    b = post_events(client, app, run_b, {"eventType": "log", "idempotencyKey": "k"})
    assert a.get_json()["eventId"] != b.get_json()["eventId"]
    assert stored_events(app, run_b)[0][1] == 1


@pytest.mark.parametrize("status", ["queued", "completed", "failed", "cancelled"])
def test_events_are_accepted_in_any_run_state(app, client, status):
    run = make_run(app, make_user(app), status=status)
    r = post_events(client, app, run, {"eventType": "late.log"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["runStatus"] == status


def test_events_do_not_change_the_runs_updated_at(app, client):
    user = make_user(app)
    run = make_run(app, user, status="running")
    sign_in(client, user)
    before = client.get(f"/api/design/runs/{run.id}").get_json()["run"]["updatedAt"]
    post_events(client, app, run, {"eventType": "log"})
    after = client.get(f"/api/design/runs/{run.id}").get_json()["run"]["updatedAt"]
    assert before == after


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "eventType"),
        ({"eventType": ""}, "eventType"),
        ({"eventType": "x" * 101}, "eventType"),
        ({"eventType": 5}, "eventType"),
        ({"eventType": "x", "message": "m" * 65_537}, "message"),
        ({"eventType": "x", "message": 3}, "message"),
        ({"eventType": "x", "metadata": []}, "metadata"),
        ({"eventType": "x", "metadata": "{}"}, "metadata"),
        ({"eventType": "x", "metadata": {"blob": "b" * 65_536}}, "metadata"),
        ({"eventType": "x", "idempotencyKey": "k" * 201}, "idempotencyKey"),
        ({"eventType": "x", "idempotencyKey": 1}, "idempotencyKey"),
        ({"events": []}, "events"),
        ({"events": "nope"}, "events"),
        ({"events": [5]}, "events[0]"),
        ({"eventType": "x", "message": "nul\u0000byte"}, "message"),
    ],
)
def test_invalid_event_is_400_naming_the_field_and_stores_nothing(app, client, body, field):
    run = make_run(app, make_user(app), status="running")
    r = post_events(client, app, run, body)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["code"] == "invalid_request"
    assert field in r.get_json()["error"], r.get_json()
    assert stored_events(app, run) == []


def test_limits_are_inclusive(app, client):
    run = make_run(app, make_user(app), status="running")
    body = {
        "eventType": "t" * 100,
        "message": "m" * 65_536,
        "idempotencyKey": "k" * 200,
        "metadata": {"b": "x" * (65_536 - 8)},  # {"b":"…"} is exactly 64 KiB
    }
    r = post_events(client, app, run, body)
    assert r.status_code == 200, r.get_json()


def test_metadata_round_trips_to_the_user(app, client):
    user = make_user(app)
    run = make_run(app, user, status="running")
    meta = {"tool": "write_file", "args": {"path": "index.html"}, "n": [1, 2.5, None, True]}
    post_events(client, app, run, {"eventType": "agent.tool_use", "message": "m", "metadata": meta})
    sign_in(client, user)
    event = client.get(f"/api/design/runs/{run.id}/events").get_json()["events"][0]
    assert event["metadata"] == meta
    assert event["eventType"] == "agent.tool_use"
    assert event["runId"] == str(run.id)
    assert event["createdAt"].endswith("Z")


def test_unknown_run_is_404_and_nothing_is_stored(app, client):
    import uuid

    missing = uuid.uuid4()
    r = client.post(
        f"/api/runner/runs/{missing}/events",
        json={"eventType": "x"},
        headers=runner_headers(app, missing),
    )
    assert r.status_code == 404, r.get_json()
