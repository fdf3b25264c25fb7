"""The reapers (triggers/reaper.py) with short timeouts: runner_lost and start_timeout."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from designrun.extensions import db
from designrun.models import Run, RunEvent, RunTransition
from designrun.models.types import utcnow
from designrun.triggers import reaper
from tests.factories import make_run, make_user, runner_headers


def age(app, run_id, seconds, **fields):
    """Move the run's clocks ``seconds`` into the past (what waiting that long would do)."""
    past = utcnow() - timedelta(seconds=seconds)
    values = dict.fromkeys(fields.pop("clocks", ()), past)
    with app.app_context():
        db.session.execute(update(Run).where(Run.id == run_id).values(**values, **fields))
        db.session.commit()
        db.session.remove()


def story(app, run_id):
    with app.app_context():
        run = db.session.get(Run, run_id)
        transitions = [
            (t.from_status, t.to_status, t.by, t.reason)
            for t in db.session.scalars(select(RunTransition).where(RunTransition.run_id == run_id))
        ]
        events = [
            (e.event_type, e.message)
            for e in db.session.scalars(select(RunEvent).where(RunEvent.run_id == run_id))
        ]
        result = (run.status, run.failure_reason, transitions, events)
        db.session.remove()
        return result


def test_a_silent_running_run_fails_as_runner_lost_once(app_factory):
    app = app_factory(RUN_STALE_AFTER=5)
    user = make_user(app)
    lost = make_run(app, user, status="running")
    fresh = make_run(app, user, status="running")
    age(app, lost.id, 6, clocks=("last_heartbeat_at", "started_at"))
    age(app, fresh.id, 2, clocks=("last_heartbeat_at", "started_at"))

    assert reaper.run_once(app) == 1
    assert reaper.run_once(app) == 0  # never twice
    status, reason, transitions, events = story(app, lost.id)
    assert (status, reason) == ("failed", "runner_lost")
    assert transitions == [("running", "failed", "system", "runner_lost")]
    assert [kind for kind, _ in events] == ["error"] and "RUN_STALE_AFTER" in events[0][1]
    assert story(app, fresh.id)[0] == "running"


def test_any_runner_callback_keeps_a_run_alive(app_factory):
    app = app_factory(RUN_STALE_AFTER=5)
    run = make_run(app, make_user(app), status="running")
    age(app, run.id, 60, clocks=("last_heartbeat_at", "started_at"))
    r = app.test_client().post(
        f"/api/runner/runs/{run.id}/events",
        json={"eventType": "log", "message": "still here"},
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200
    assert reaper.run_once(app) == 0
    assert story(app, run.id)[0] == "running"


def test_a_delivered_run_that_never_reports_fails_as_start_timeout(app_factory):
    app = app_factory(RUN_START_TIMEOUT=5)
    user = make_user(app)
    silent = make_run(app, user, dispatch_backend="jobs", dispatch_state="sent")
    age(app, silent.id, 6, clocks=("dispatched_at",))
    pending = make_run(app, user, dispatch_backend="jobs", dispatch_state="pending")
    age(app, pending.id, 600, clocks=("created_at",))  # not delivered yet: the dispatcher's

    assert reaper.run_once(app) == 1
    status, reason, transitions, events = story(app, silent.id)
    assert (status, reason) == ("failed", "start_timeout")
    assert transitions == [("queued", "failed", "system", "start_timeout")]
    assert "RUN_START_TIMEOUT" in events[0][1]
    assert story(app, pending.id)[0] == "queued"


def test_a_runner_that_reports_running_just_in_time_is_not_reaped(app_factory):
    app = app_factory(RUN_START_TIMEOUT=5)
    run = make_run(app, make_user(app), dispatch_backend="jobs", dispatch_state="sent")
    age(app, run.id, 6, clocks=("dispatched_at",))
    r = app.test_client().post(
        f"/api/runner/runs/{run.id}/status",
        json={"status": "running"},
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200
    assert reaper.run_once(app) == 0
    assert story(app, run.id)[:2] == ("running", None)
