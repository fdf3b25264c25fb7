"""Cancel with the ``jobs`` backend: a queued run's trigger is withdrawn; a runner gets 409."""

from __future__ import annotations

from designrun.triggers import dispatcher
from tests.factories import bearer
from tests.triggers.support import create_run, daytona_config, jobs, trigger_rows, user_session


def test_cancelling_a_queued_run_withdraws_its_trigger(daytona, app_factory):
    app = app_factory(**daytona_config(daytona))
    client, token = user_session(app)
    run = create_run(client, token)
    assert len(trigger_rows(app)) == 1

    r = client.post(f"/api/design/runs/{run['id']}/cancel", headers=bearer(token))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["run"]["dispatch"]["state"] == "none"
    assert trigger_rows(app) == []
    assert dispatcher.run_once(app) == 0
    assert daytona.log == []


def test_a_jobs_runner_learns_of_the_cancel_from_a_409(daytona, app_factory):
    daytona.expect_request("/jobs", method="POST").respond_with_json({})
    app = app_factory(**daytona_config(daytona))
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)
    [job] = jobs(daytona)
    runner = {"Authorization": f"Bearer {job['runnerToken']}"}
    path = f"/api/runner/runs/{run['id']}/status"
    assert client.post(path, json={"status": "running"}, headers=runner).status_code == 200

    r = client.post(f"/api/design/runs/{run['id']}/cancel", headers=bearer(token))
    assert r.status_code == 200, r.get_json()

    r = client.post(path, json={"progress": 0.5}, headers=runner)
    assert r.status_code == 409, r.get_json()
    assert r.get_json()["code"] == "run_finished" and r.get_json()["runStatus"] == "cancelled"
