"""A user's cancel racing the runner's ``completed``: exactly one terminal state wins.

The loser gets 409 (the cancel: ``runStatus: completed``; the runner: ``runStatus: cancelled``),
and the transition table holds exactly one row for the change, never two terminal states.
"""

from __future__ import annotations

import threading

from sqlalchemy import select

from designrun.extensions import db
from designrun.models import Run, RunTransition
from tests.factories import bearer, make_run, make_user, runner_headers, sign_in

ROUNDS = 25


def test_cancel_racing_completed_has_one_winner_and_one_transition(app):
    user = make_user(app)
    token = sign_in(app.test_client(), user)
    outcomes = {"cancel": 0, "runner": 0}
    for _ in range(ROUNDS):
        run = make_run(app, user, status="running")
        start = threading.Barrier(2)
        answers: dict[str, tuple[int, dict]] = {}

        def cancel(run_id=run.id, answers=answers, start=start):
            client = app.test_client()
            start.wait(timeout=10)
            r = client.post(f"/api/design/runs/{run_id}/cancel", headers=bearer(token))
            answers["cancel"] = (r.status_code, r.get_json())

        def complete(run_id=run.id, answers=answers, start=start):
            client = app.test_client()
            headers = runner_headers(app, run_id)
            start.wait(timeout=10)
            r = client.post(
                f"/api/runner/runs/{run_id}/status", json={"status": "completed"}, headers=headers
            )
            answers["runner"] = (r.status_code, r.get_json())

        threads = [threading.Thread(target=cancel), threading.Thread(target=complete)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        (cancel_status, cancel_body), (runner_status, runner_body) = (
            answers["cancel"],
            answers["runner"],
        )
        with app.app_context():
            final = db.session.get(Run, run.id).status
            rows = db.session.scalars(
                select(RunTransition).where(RunTransition.run_id == run.id)
            ).all()
            changes = [(t.from_status, t.to_status, t.by) for t in rows]
            db.session.remove()
        if final == "cancelled":
            outcomes["cancel"] += 1
            assert cancel_status == 200, cancel_body
            assert runner_status == 409 and runner_body["runStatus"] == "cancelled", runner_body
            assert changes == [("running", "cancelled", "user")]
        else:
            outcomes["runner"] += 1
            assert final == "completed"
            assert runner_status == 200, runner_body
            assert cancel_status == 409 and cancel_body["runStatus"] == "completed", cancel_body
            assert changes == [("running", "completed", "runner")]
    assert sum(outcomes.values()) == ROUNDS
