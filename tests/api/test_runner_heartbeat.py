"""Event posts are runner callbacks: they record lastHeartbeatAt like every other one.

Stored events record it in their own transaction (services/event_store.py); a post that stores
nothing (a bad body) records it on its way out (api/runner.py).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from designrun.extensions import db
from designrun.models import Run
from designrun.models.types import utcnow
from tests.factories import make_run, make_user, runner_headers


def _heartbeat(app, run_id):
    with app.app_context():
        db.session.expire_all()
        return db.session.get(Run, run_id).last_heartbeat_at


def _set_heartbeat(app, run_id, value):
    with app.app_context():
        db.session.execute(update(Run).where(Run.id == run_id).values(last_heartbeat_at=value))
        db.session.commit()


def test_stored_events_record_the_heartbeat_at_most_once_per_resolution(app, client):
    run = make_run(app, make_user(app))
    url = f"/api/runner/runs/{run.id}/events"
    headers = runner_headers(app, run)
    assert _heartbeat(app, run.id) is None

    before = utcnow()
    assert client.post(url, json={"eventType": "log"}, headers=headers).status_code == 200
    first = _heartbeat(app, run.id)
    assert first is not None and first >= before - timedelta(seconds=1)

    batch = {"events": [{"eventType": "log"}] * 3}
    assert client.post(url, json=batch, headers=headers).status_code == 200
    assert _heartbeat(app, run.id) == first  # within the resolution: not written again

    old = utcnow() - timedelta(minutes=5)
    _set_heartbeat(app, run.id, old)
    assert client.post(url, json=batch, headers=headers).status_code == 200
    assert _heartbeat(app, run.id) > old


def test_a_rejected_event_post_still_records_the_heartbeat(app, client):
    run = make_run(app, make_user(app))
    old = utcnow() - timedelta(minutes=5)
    _set_heartbeat(app, run.id, old)
    url = f"/api/runner/runs/{run.id}/events"
    r = client.post(url, json={"message": "no type"}, headers=runner_headers(app, run))
    assert r.status_code == 400
    assert _heartbeat(app, run.id) > old
