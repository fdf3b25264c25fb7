"""API.md § User run endpoints: the runner is triggered in the background, never blocking."""

from __future__ import annotations

import threading
import time

from werkzeug import Response

from designrun.triggers import dispatcher
from tests.triggers.support import (
    create_run,
    daytona_config,
    get_run,
    jobs,
    trigger_rows,
    user_session,
    wait_for,
)

SLOW = 2.0


def test_create_answers_before_a_slow_daytona_and_the_job_still_arrives(daytona, app_factory):
    arrived = threading.Event()

    def slow(request):
        arrived.set()
        time.sleep(SLOW)
        return Response('{"id": "job-1"}', status=200, content_type="application/json")

    daytona.expect_request("/jobs", method="POST").respond_with_handler(slow)
    app = app_factory(**daytona_config(daytona))
    dispatcher.start(app)
    client, token = user_session(app)

    started = time.monotonic()
    run = create_run(client, token)
    elapsed = time.monotonic() - started

    assert elapsed < SLOW / 2, elapsed
    assert run["status"] == "queued"
    assert arrived.wait(10), "the job request never reached Daytona"
    assert wait_for(lambda: len(daytona.log) == 1 and trigger_rows(app) == [])
    assert [body["runId"] for body in jobs(daytona)] == [run["id"]]
    stored = get_run(client, token, run["id"])
    assert stored["status"] == "queued"
    assert stored["dispatch"] == {
        "backend": "jobs",
        "state": "sent",
        "attempts": 1,
        "lastError": None,
    }


def test_started_dispatcher_sends_each_new_run_once(daytona, app_factory):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    app = app_factory(**daytona_config(daytona))
    dispatcher.start(app)
    client, token = user_session(app)

    ids = [create_run(client, token, prompt=f"design {n}")["id"] for n in range(5)]

    assert wait_for(lambda: len(daytona.log) >= 5 and trigger_rows(app) == [])
    time.sleep(0.2)  # a duplicate send would show up by now
    assert sorted(body["runId"] for body in jobs(daytona)) == sorted(ids)


def test_a_failing_trigger_does_not_hold_the_pool_while_it_backs_off(daytona, app_factory):
    """With one pool thread and a run whose job keeps failing (backoff 1, 2, 4, 8 s), a second
    run's job still goes out at once: the failing one waits as a due row, not in a thread."""

    def answer(request):
        if request.get_json()["prompt"] == "always fails":
            return Response("{}", status=500, content_type="application/json")
        return Response("{}", status=200, content_type="application/json")

    daytona.expect_request("/jobs", method="POST").respond_with_handler(answer)
    app = app_factory(**daytona_config(daytona, TRIGGER_BACKOFF_BASE=1.0))
    dispatcher.start(app, workers=1)
    client, token = user_session(app)

    bad = create_run(client, token, prompt="always fails")
    assert wait_for(lambda: len(daytona.log) >= 1)
    good = create_run(client, token, prompt="goes through")

    assert wait_for(lambda: good["id"] in [b["runId"] for b in jobs(daytona)], timeout=6)
    # the good run's row goes once its answer is in; the bad one waits, released, for its retry
    assert wait_for(lambda: [str(r.run_id) for r in trigger_rows(app)] == [bad["id"]], timeout=6)
    assert trigger_rows(app)[0].attempts >= 1
