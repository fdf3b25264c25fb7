"""docs/api.md § Webhooks: endpoints per account, the address rule, the queue written with the
run's terminal transition."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_run, make_user, runner_headers, sign_in
from tests.ops.webhook_support import add_webhook, deliveries, finish_run

PUBLIC = "https://93.184.216.34/designrun"  # a public address literal: nothing is resolved


@pytest.fixture
def signed_in(app):
    user = make_user(app)
    return user, sign_in(app.test_client(), user)


def test_create_shows_the_secret_once_and_list_never(app, client, signed_in):
    _, token = signed_in
    r = client.post("/api/design/webhooks", json={"url": PUBLIC}, headers=bearer(token))
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["ok"] is True and body["secret"].startswith("whsec_")
    assert body["webhook"]["url"] == PUBLIC
    assert body["webhook"]["events"] == ["run.completed", "run.failed", "run.cancelled"]
    assert set(body["webhook"]) == {"id", "url", "events", "createdAt"}
    listed = client.get("/api/design/webhooks", headers=bearer(token)).get_json()
    assert listed["webhooks"] == [body["webhook"]]
    assert body["secret"] not in str(listed)


def test_delete_removes_it_and_another_account_cannot_see_or_delete_it(app, client, signed_in):
    _, token = signed_in
    webhook, _ = add_webhook(app, token, PUBLIC, events=["run.failed"])
    other = sign_in(app.test_client(), make_user(app))
    path = f"/api/design/webhooks/{webhook['id']}"
    assert client.get("/api/design/webhooks", headers=bearer(other)).get_json()["webhooks"] == []
    assert client.delete(path, headers=bearer(other)).status_code == 404
    r = client.get(f"{path}/deliveries", headers=bearer(other))
    assert r.status_code == 404 and r.get_json()["code"] == "webhook_not_found"
    assert client.delete(path, headers=bearer(token)).get_json() == {"ok": True}
    assert client.delete(path, headers=bearer(token)).status_code == 404
    assert client.get("/api/design/webhooks", headers=bearer(token)).get_json()["webhooks"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "ftp://93.184.216.34/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://user:pass@93.184.216.34/hook",
        "not a url",
    ],
)
def test_refused_urls_are_400_and_store_nothing(app, client, signed_in, url):
    _, token = signed_in
    r = client.post("/api/design/webhooks", json={"url": url}, headers=bearer(token))
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["code"] == "webhook_url_refused"
    assert r.get_json()["error"].startswith("url:")
    assert client.get("/api/design/webhooks", headers=bearer(token)).get_json()["webhooks"] == []


def test_private_urls_are_accepted_with_webhook_allow_private(app_factory):
    app = app_factory(WEBHOOK_ALLOW_PRIVATE=True)
    token = sign_in(app.test_client(), make_user(app))
    webhook, _ = add_webhook(app, token, "http://127.0.0.1:9/hook")
    assert webhook["url"] == "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    "body",
    [
        {"url": PUBLIC, "events": ["run.started"]},
        {"url": PUBLIC, "events": []},
        {"url": PUBLIC, "events": "run.failed"},
        {"url": 42},
        {},
        {"url": "https://93.184.216.34/" + "a" * 2048},
    ],
)
def test_invalid_bodies_are_400(client, signed_in, body):
    _, token = signed_in
    r = client.post("/api/design/webhooks", json=body, headers=bearer(token))
    assert r.status_code == 400, r.get_json()


def test_at_most_20_endpoints_per_account(app, client, signed_in):
    _, token = signed_in
    for i in range(20):
        add_webhook(app, token, f"{PUBLIC}/{i}")
    r = client.post("/api/design/webhooks", json={"url": PUBLIC}, headers=bearer(token))
    assert r.status_code == 400 and r.get_json()["code"] == "too_many_webhooks"


def test_a_terminal_transition_queues_one_delivery_per_wanting_endpoint(app, signed_in):
    user, token = signed_in
    everything, _ = add_webhook(app, token, f"{PUBLIC}/all")
    failures_only, _ = add_webhook(app, token, f"{PUBLIC}/failed", events=["run.failed"])
    other_user = make_user(app)
    add_webhook(app, sign_in(app.test_client(), other_user), f"{PUBLIC}/other")

    run = finish_run(app, user, "completed")
    again = app.test_client().post(
        f"/api/runner/runs/{run.id}/status",
        json={"status": "completed"},
        headers=runner_headers(app, run),
    )
    assert again.status_code == 200  # an idempotent repeat queues nothing more
    make_run(app, user, status="running")  # not finished: nothing
    rows = deliveries(app)
    assert [(str(r.endpoint_id), r.event_type, r.run_id) for r in rows] == [
        (everything["id"], "run.completed", run.id)
    ]
    failed = finish_run(app, user, "failed")
    rows = [r for r in deliveries(app) if r.run_id == failed.id]
    assert sorted(str(r.endpoint_id) for r in rows) == sorted(
        [everything["id"], failures_only["id"]]
    )
    assert all(r.state == "pending" and r.message_id.startswith("msg_") for r in rows)


def test_cancel_and_delete_are_announced_too(app, signed_in):
    user, token = signed_in
    add_webhook(app, token, PUBLIC, events=["run.cancelled"])
    client = app.test_client()
    first = make_run(app, user, status="running")
    second = make_run(app, user, status="queued")
    assert (
        client.post(f"/api/design/runs/{first.id}/cancel", headers=bearer(token)).status_code == 200
    )
    assert client.delete(f"/api/design/runs/{second.id}", headers=bearer(token)).status_code == 200
    rows = deliveries(app)
    assert sorted(r.run_id for r in rows) == sorted([first.id, second.id])
    assert all(r.event_type == "run.cancelled" for r in rows)
