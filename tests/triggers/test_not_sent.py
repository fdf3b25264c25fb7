"""When no job request is sent: no runner backend (RUNNER_BACKEND=none), or the run went away."""

from __future__ import annotations

from designrun.triggers import dispatcher
from tests.factories import runner_headers
from tests.triggers.support import (
    create_run,
    daytona_config,
    get_run,
    run_row,
    trigger_rows,
    user_session,
)


def test_backend_none_writes_no_trigger_and_run_stays_queued(daytona, app_factory):
    app = app_factory(RUNNER_BACKEND="none", DAYTONA_API_KEY="dk-unused")
    assert not app.config["DAYTONA_API_URL"]
    client, token = user_session(app)
    run = create_run(client, token)

    assert trigger_rows(app) == []
    assert dispatcher.run_once(app) == 0
    assert daytona.log == []
    assert get_run(client, token, run["id"])["status"] == "queued"


def test_backend_none_with_a_started_dispatcher_sends_nothing(daytona, app_factory):
    app = app_factory(RUNNER_BACKEND="none")
    dispatcher.start(app)
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.stop(app)

    assert trigger_rows(app) == []
    assert daytona.log == []
    assert get_run(client, token, run["id"])["status"] == "queued"


def test_run_cancelled_before_its_trigger_is_sent_is_not_sent(daytona, app_factory):
    app = app_factory(**daytona_config(daytona))
    client, token = user_session(app)
    run = create_run(client, token)
    r = client.post(
        f"/api/runner/runs/{run['id']}/status",
        json={"status": "cancelled"},
        headers=runner_headers(app, run["id"]),
    )
    assert r.status_code == 200, r.get_json()

    dispatcher.run_once(app)

    assert daytona.log == []
    assert trigger_rows(app) == []
    assert get_run(client, token, run["id"])["status"] == "cancelled"


def test_run_deleted_before_its_trigger_is_sent_is_not_sent(daytona, app_factory):
    app = app_factory(**daytona_config(daytona))
    client, token = user_session(app)
    run = create_run(client, token)
    r = client.delete(f"/api/design/runs/{run['id']}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.get_json()

    assert trigger_rows(app) == []
    assert dispatcher.run_once(app) == 0
    assert daytona.log == []
    assert run_row(app, run["id"]) is None


def test_run_already_running_when_its_trigger_comes_up_is_not_sent_again(daytona, app_factory):
    app = app_factory(**daytona_config(daytona))
    client, token = user_session(app)
    run = create_run(client, token)
    r = client.post(
        f"/api/runner/runs/{run['id']}/status",
        json={"status": "running"},
        headers=runner_headers(app, run["id"]),
    )
    assert r.status_code == 200, r.get_json()

    dispatcher.run_once(app)

    assert daytona.log == []
    assert trigger_rows(app) == []
    assert get_run(client, token, run["id"])["status"] == "running"
