"""API.md § Trigger retries: a pending trigger survives a restart and is sent once only."""

from __future__ import annotations

import threading
from datetime import timedelta

from designrun.models.types import utcnow
from designrun.triggers import dispatcher
from tests.triggers.support import (
    create_run,
    daytona_config,
    get_run,
    jobs,
    run_row,
    trigger_rows,
    update_trigger,
    user_session,
    wait_for,
)


def test_pending_trigger_of_a_stopped_app_is_sent_by_a_new_apps_dispatcher(daytona, app_factory):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    config = daytona_config(daytona)
    old_app = app_factory(**config)  # its dispatcher never runs: the process "stopped"
    client, token = user_session(old_app)
    run = create_run(client, token)
    assert len(trigger_rows(old_app)) == 1
    assert daytona.log == []

    new_app = app_factory(**config)
    dispatcher.start(new_app)

    assert wait_for(lambda: len(daytona.log) == 1, timeout=5)
    assert [body["runId"] for body in jobs(daytona)] == [run["id"]]
    assert wait_for(lambda: trigger_rows(new_app) == [])
    assert get_run(client, token, run["id"])["status"] == "queued"


def test_trigger_whose_lease_expired_mid_send_is_sent_after_restart(daytona, app_factory):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    config = daytona_config(daytona)
    old_app = app_factory(**config)
    client, token = user_session(old_app)
    run = create_run(client, token)
    # What a process that crashed during its second attempt leaves behind.
    update_trigger(
        old_app,
        run["id"],
        attempts=1,
        last_error="Daytona answered HTTP 500",
        claimed_until=utcnow() - timedelta(seconds=1),
    )

    new_app = app_factory(**config)
    dispatcher.start(new_app)

    assert wait_for(lambda: len(daytona.log) == 1, timeout=5)
    assert [body["runId"] for body in jobs(daytona)] == [run["id"]]
    assert wait_for(lambda: trigger_rows(new_app) == [])


def test_attempts_made_before_a_restart_count_towards_the_limit(daytona, app_factory):
    daytona.expect_request("/jobs", method="POST").respond_with_data("down", status=500)
    config = daytona_config(daytona)
    old_app = app_factory(**config)
    client, token = user_session(old_app)
    run = create_run(client, token)
    update_trigger(old_app, run["id"], attempts=4, claimed_until=utcnow() - timedelta(seconds=1))

    new_app = app_factory(**config)
    assert dispatcher.run_once(new_app) == 1

    assert len(daytona.log) == 1
    stored = get_run(client, token, run["id"])
    assert stored["status"] == "failed", stored
    assert "5 attempts" in stored["error"]
    assert trigger_rows(new_app) == []


def test_trigger_leased_by_a_live_process_is_not_taken_over(daytona, app_factory):
    config = daytona_config(daytona)
    app = app_factory(**config)
    client, token = user_session(app)
    run = create_run(client, token)
    lease = utcnow() + timedelta(seconds=60)
    update_trigger(app, run["id"], claimed_until=lease)

    other_app = app_factory(**config)
    assert dispatcher.run_once(other_app) == 0

    assert daytona.log == []
    (row,) = trigger_rows(app)
    assert row.claimed_until == lease
    assert row.attempts == 0


def test_two_processes_polling_at_once_send_each_trigger_once(daytona, app_factory):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    config = daytona_config(daytona)
    apps = [app_factory(**config), app_factory(**config)]
    client, token = user_session(apps[0])
    ids = [create_run(client, token, prompt=f"design {n}")["id"] for n in range(6)]
    barrier = threading.Barrier(len(apps))
    claimed = [0] * len(apps)

    def poll(index):
        barrier.wait()
        claimed[index] = dispatcher.run_once(apps[index])

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(len(apps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sum(claimed) == len(ids), claimed
    assert len(daytona.log) == len(ids)
    assert sorted(body["runId"] for body in jobs(daytona)) == sorted(ids)
    assert trigger_rows(apps[0]) == []
    assert all(run_row(apps[0], run_id).status == "queued" for run_id in ids)
