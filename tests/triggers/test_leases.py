"""Leases (``claimed_until``): a trigger is sent by whoever holds its current lease, once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from werkzeug import Response

from designrun.models.types import utcnow
from designrun.triggers import dispatcher
from tests.triggers.support import (
    create_run,
    daytona_config,
    jobs,
    trigger_rows,
    update_trigger,
    user_session,
    wait_for,
)


def test_trigger_claimed_again_while_queued_in_a_busy_pool_is_sent_once(
    daytona, app_factory, monkeypatch
):
    # A saturated pool: a claimed trigger waits in the queue past its lease, so the next poll
    # claims it again and queues it a second time. Only the holder of the current lease sends.
    def slow_ok(request):
        time.sleep(0.3)
        return Response("{}", status=200, content_type="application/json")

    daytona.expect_request("/jobs", method="POST").respond_with_handler(slow_ok)
    config = daytona_config(daytona)
    old_app = app_factory(**config)
    client, token = user_session(old_app)
    run = create_run(client, token)
    update_trigger(old_app, run["id"], next_attempt_at=utcnow() + timedelta(hours=1))

    app = app_factory(**config)
    first_poll_done = threading.Event()
    real_run_once = dispatcher.run_once

    def run_once_then_signal(app_):
        try:
            return real_run_once(app_)
        finally:
            first_poll_done.set()

    monkeypatch.setattr(dispatcher, "run_once", run_once_then_signal)
    dispatcher.start(app, workers=2, poll_interval=60)  # one pass now (nothing due), then idle
    assert first_poll_done.wait(10)
    gate = threading.Event()
    pool = app.extensions["designrun.dispatcher"].executor
    for _ in range(2):
        pool.submit(gate.wait, 10)  # both workers busy
    update_trigger(app, run["id"], next_attempt_at=utcnow() - timedelta(seconds=1))
    assert dispatcher.run_once(app) == 1
    update_trigger(app, run["id"], claimed_until=utcnow() - timedelta(seconds=1))  # lease ran out
    assert dispatcher.run_once(app) == 1
    gate.set()

    assert wait_for(lambda: trigger_rows(app) == [] and len(daytona.log) >= 1)
    time.sleep(0.5)  # a second send would have arrived by now
    assert [body["runId"] for body in jobs(daytona)] == [run["id"]]
