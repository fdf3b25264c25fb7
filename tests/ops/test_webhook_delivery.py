"""docs/operations.md § Webhooks: deliveries from the durable queue to a receiver on loopback.

Signatures are verified with the ``standardwebhooks`` package, the way a receiver would; 500s
and timeouts are retried with the same webhook-id; a delivery whose sender is killed mid-request
is sent again by another process once its lease runs out, and its event is queued only once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from standardwebhooks import Webhook
from werkzeug import Request, Response

from designrun.models.types import utcnow
from designrun.triggers import webhooks as sweep
from tests.factories import bearer, make_user, sign_in
from tests.ops.webhook_support import add_webhook, deliveries, finish_run, update_delivery
from tests.triggers.support import wait_for

FAST = {"WEBHOOK_ALLOW_PRIVATE": True, "WEBHOOK_TIMEOUT": 2.0, "WEBHOOK_RETRY_DELAYS": (0,)}


@pytest.fixture
def hooked(app_factory, receiver):
    """(app, user, token, webhook, secret) with a webhook on the loopback receiver."""
    app = app_factory(**FAST)
    user = make_user(app)
    token = sign_in(app.test_client(), user)
    webhook, secret = add_webhook(app, token, receiver.url_for("/hook"))
    return app, user, token, webhook, secret


def verified(secret: str, request: Request) -> dict:
    """The body as a Standard Webhooks receiver sees it (raises when the signature is wrong)."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Webhook(secret).verify(request.get_data(), headers)


def log_of(app, token, webhook):
    r = app.test_client().get(
        f"/api/design/webhooks/{webhook['id']}/deliveries", headers=bearer(token)
    )
    assert r.status_code == 200, r.get_json()
    return r.get_json()["deliveries"]


def test_delivery_is_signed_the_standard_webhooks_way(hooked, receiver):
    app, user, token, webhook, secret = hooked
    receiver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    run = finish_run(app, user, "completed")
    assert sweep.run_once(app) == 1
    ((request, _response),) = receiver.log
    body = verified(secret, request)
    assert body["type"] == "run.completed"
    assert body["data"]["run"]["id"] == str(run.id)
    assert body["data"]["run"]["status"] == "completed"
    assert body["timestamp"].endswith("Z")
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["Content-Type"] == "application/json"
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook("whsec_" + "A" * 44).verify(request.get_data(), dict(request.headers))
    (shown,) = log_of(app, token, webhook)
    assert shown["state"] == "delivered" and shown["attempts"] == 1
    assert shown["lastStatusCode"] == 204 and shown["nextAttemptAt"] is None
    assert shown["webhookId"] == request.headers["webhook-id"]
    assert sweep.run_once(app) == 0, "delivered once"


def test_500_is_retried_with_the_same_webhook_id_until_delivered(hooked, receiver):
    app, user, token, webhook, secret = hooked
    receiver.expect_ordered_request("/hook").respond_with_data("down", status=500)
    receiver.expect_ordered_request("/hook").respond_with_data("down", status=503)
    receiver.expect_ordered_request("/hook").respond_with_data("ok", status=200)
    finish_run(app, user, "failed")
    for expected in (1, 1, 1):
        assert sweep.run_once(app) == expected
    assert sweep.run_once(app) == 0
    ids = {request.headers["webhook-id"] for request, _ in receiver.log}
    assert len(receiver.log) == 3 and len(ids) == 1
    for request, _ in receiver.log:
        assert verified(secret, request)["type"] == "run.failed"
    (shown,) = log_of(app, token, webhook)
    assert shown["state"] == "delivered" and shown["attempts"] == 3
    assert [a["statusCode"] for a in shown["recentAttempts"]] == [500, 503, 200]
    assert shown["recentAttempts"][0]["error"] == "HTTP 500"


def test_a_failed_attempt_waits_for_its_backoff(app_factory, receiver):
    app = app_factory(**{**FAST, "WEBHOOK_RETRY_DELAYS": (300,)})
    user = make_user(app)
    token = sign_in(app.test_client(), user)
    webhook, _ = add_webhook(app, token, receiver.url_for("/hook"))
    receiver.expect_request("/hook").respond_with_data("no", status=500)
    finish_run(app, user)
    assert sweep.run_once(app) == 1
    assert sweep.run_once(app) == 0, "not due before its backoff"
    (shown,) = log_of(app, token, webhook)
    assert shown["state"] == "pending" and shown["lastStatusCode"] == 500
    assert shown["nextAttemptAt"] > shown["lastAttemptAt"]


def test_a_timeout_is_retried(app_factory, receiver):
    app = app_factory(**{**FAST, "WEBHOOK_TIMEOUT": 0.5})
    user = make_user(app)
    token = sign_in(app.test_client(), user)
    webhook, _ = add_webhook(app, token, receiver.url_for("/hook"))
    release = threading.Event()

    def slow(request: Request) -> Response:
        release.wait(5)
        return Response("late", status=200)

    receiver.expect_ordered_request("/hook").respond_with_handler(slow)
    receiver.expect_ordered_request("/hook").respond_with_data("ok", status=200)
    finish_run(app, user)
    assert sweep.run_once(app) == 1
    release.set()
    (shown,) = log_of(app, token, webhook)
    assert shown["state"] == "pending" and shown["lastError"] == "timed out"
    assert shown["lastStatusCode"] is None
    assert wait_for(lambda: sweep.run_once(app) == 1)
    (shown,) = log_of(app, token, webhook)
    assert shown["state"] == "delivered" and shown["attempts"] == 2


def test_network_errors_are_retried_and_given_up_after_a_day(app_factory, receiver):
    from tests.triggers.support import closed_port

    app = app_factory(**FAST)
    user = make_user(app)
    token = sign_in(app.test_client(), user)
    webhook, _ = add_webhook(app, token, f"http://127.0.0.1:{closed_port()}/hook")
    finish_run(app, user)
    assert sweep.run_once(app) == 1
    (row,) = deliveries(app)
    assert row.state == "pending" and row.last_error.startswith("network error")
    update_delivery(app, row.id, created_at=utcnow() - timedelta(days=1))
    assert sweep.run_once(app) == 1
    (shown,) = log_of(app, token, webhook)
    assert shown["state"] == "failed" and shown["attempts"] == 2
    assert shown["nextAttemptAt"] is None
    assert sweep.run_once(app) == 0


def test_the_address_rule_is_checked_again_at_delivery_time(hooked, receiver):
    app, user, token, webhook, _ = hooked
    finish_run(app, user)
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False  # the setting changed since the URL was accepted
    assert sweep.run_once(app) == 1
    assert receiver.log == [], "nothing was sent to the loopback address"
    (shown,) = log_of(app, token, webhook)
    assert shown["state"] == "pending"
    assert shown["lastError"].startswith("refused:") and "127.0.0.1" in shown["lastError"]


def test_deleting_the_endpoint_stops_its_pending_deliveries(hooked, receiver):
    app, user, token, webhook, _ = hooked
    finish_run(app, user)
    r = app.test_client().delete(f"/api/design/webhooks/{webhook['id']}", headers=bearer(token))
    assert r.status_code == 200
    assert sweep.run_once(app) == 0
    assert receiver.log == []


def test_one_delivery_per_event_when_the_sender_is_killed_mid_delivery(
    hooked, receiver, database_url, tmp_path
):
    """A process leases the delivery and is SIGKILLed while the receiver holds its request.

    The row stays leased and pending; when the lease has run out, another process sends it
    again with the same webhook-id, and it is delivered (and counted) once.
    """
    app, user, _token, _webhook, secret = hooked
    arrived, release = threading.Event(), threading.Event()

    def hold(request: Request) -> Response:
        arrived.set()
        release.wait(30)
        return Response("", status=200)

    receiver.expect_ordered_request("/hook").respond_with_handler(hold)
    receiver.expect_ordered_request("/hook").respond_with_data("", status=200)
    finish_run(app, user)
    script = (
        "from designrun import create_app\n"
        "from designrun.triggers import webhooks\n"
        "app = create_app({'WEBHOOK_ALLOW_PRIVATE': True, 'RUNNER_BACKEND': 'none'})\n"
        "webhooks.run_once(app)\n"
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DESIGNRUN_INSTANCE_PATH": str(tmp_path / "worker"),
        "NO_PROXY": "127.0.0.1",
    }
    worker = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        assert arrived.wait(30), "the worker never sent the delivery"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        release.set()
        if worker.poll() is None:
            worker.kill()
    (row,) = deliveries(app)
    assert row.state == "pending" and row.attempts == 0 and row.claimed_until is not None
    assert sweep.run_once(app) == 0, "the dead worker's lease still holds"
    update_delivery(app, row.id, claimed_until=utcnow() - timedelta(seconds=1))  # it runs out
    assert sweep.run_once(app) == 1
    assert sweep.run_once(app) == 0
    assert wait_for(lambda: len(receiver.log) == 2)
    ids = [request.headers["webhook-id"] for request, _ in receiver.log]
    assert ids == [row.message_id, row.message_id]
    assert all(verified(secret, request)["type"] == "run.completed" for request, _ in receiver.log)
    (row,) = deliveries(app)
    assert row.state == "delivered" and row.attempts == 1
    assert json.loads(row.payload)["data"]["run"]["status"] == "completed"
