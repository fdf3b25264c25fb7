"""API.md § Runner backends, ``daytona``: a run executes designrun-runner in its own sandbox,
created and watched through the real Daytona SDK against tests/fake_daytona.py."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

from designrun.extensions import db
from designrun.models import DaytonaSandbox
from designrun.triggers import dispatcher, sandboxes
from tests.triggers.support import (
    create_run,
    get_events,
    get_run,
    trigger_rows,
    update_trigger,
    user_session,
    wait_for,
)


def sandbox_row(app, run_id: str) -> DaytonaSandbox | None:
    with app.app_context():
        try:
            row = db.session.get(DaytonaSandbox, uuid.UUID(run_id))
            db.session.expunge_all()
            return row
        finally:
            db.session.remove()


def finished(client, token, run_id: str) -> bool:
    return get_run(client, token, run_id)["status"] in {"completed", "failed", "cancelled"}


def test_run_completes_in_its_own_labelled_sandbox_then_the_sandbox_is_deleted(sandbox_app, fake):
    app = sandbox_app()
    client, token = user_session(app)
    run = create_run(client, token)

    dispatcher.run_once(app)

    assert trigger_rows(app) == []
    [sandbox] = fake.live()
    assert sandbox.labels == {
        "designrun.run_id": run["id"],
        "designrun.instance": sandboxes.instance_label(app.config),
        "code-toolbox-language": "python",
    }
    body = fake.created[0]
    assert body["snapshot"] == "designrun-runner-test"
    assert body["autoStopInterval"] == 15
    assert body["autoDeleteInterval"] == 60
    assert body["networkAllowList"] == "127.0.0.1/32"  # the callback origin, nothing else
    row = sandbox_row(app, run["id"])
    assert row is not None and row.state == "running"
    assert row.sandbox_id == sandbox.id and row.command_id and row.session_id
    [command] = fake.commands(sandbox.id)
    assert command.command.startswith("designrun-runner --job ")

    assert wait_for(lambda: finished(client, token, run["id"]), timeout=60)
    stored = get_run(client, token, run["id"])
    assert stored["status"] == "completed", (stored, command.log.decode())
    assert stored["dispatch"] == {
        "backend": "daytona",
        "state": "sent",
        "attempts": 1,
        "lastError": None,
    }
    events = get_events(client, token, run["id"])
    assert any(e["message"] == "hello from the sandbox" for e in events), events

    # The job reached the sandbox as a file only its owner can read; the token is nowhere else.
    job_path = command.command.split()[2]
    job = json.loads(Path(job_path).read_text())
    assert job["runId"] == run["id"]
    assert stat.S_IMODE(Path(job_path).stat().st_mode) == 0o600
    assert job["runnerToken"] not in json.dumps(fake.created)
    assert job["runnerToken"] not in command.command

    assert wait_for(lambda: (sandboxes.watch_once(app), not fake.live())[1], timeout=30)
    assert fake.deleted == [sandbox.id]
    assert sandbox_row(app, run["id"]).state == "deleted"


def test_daytona_down_during_create_is_retried_then_the_run_fails_dispatch(sandbox_app, fake):
    fake.fail("POST", r"^/api/sandbox$", 503, times=100)
    app = sandbox_app(TRIGGER_MAX_ATTEMPTS=3)
    client, token = user_session(app)
    run = create_run(client, token)

    dispatcher.run_once(app)

    assert [r for r in fake.requests if r == ("POST", "/api/sandbox")] == [
        ("POST", "/api/sandbox")
    ] * 3
    stored = get_run(client, token, run["id"])
    assert stored["status"] == "failed", stored
    assert "after 3 attempts" in stored["error"]
    assert stored["failureReason"] == "dispatch_failed"
    assert stored["dispatch"]["backend"] == "daytona" and stored["dispatch"]["state"] == "failed"
    assert "Daytona" in stored["error"] and "injected failure" in stored["error"]
    assert [e["eventType"] for e in get_events(client, token, run["id"])] == ["error"]
    assert trigger_rows(app) == []
    assert fake.live() == []
    row = sandbox_row(app, run["id"])
    assert row is not None and row.state == "finished"  # abandoned: swept at once
    sandboxes.watch_once(app)
    assert sandbox_row(app, run["id"]).state == "deleted"


def test_daytona_errors_are_retried_and_the_run_then_starts(sandbox_app, fake):
    fake.fail("POST", r"^/api/sandbox$", 500, times=1)
    fake.fail("POST", r"/process/session$", 502, times=1)  # after the sandbox was created
    app = sandbox_app()
    client, token = user_session(app)
    run = create_run(client, token)

    dispatcher.run_once(app)

    assert len(fake.created) == 1  # the second attempt found the first one's sandbox
    [sandbox] = fake.live()
    assert len(fake.commands(sandbox.id)) == 1
    assert wait_for(lambda: finished(client, token, run["id"]), timeout=60)
    assert get_run(client, token, run["id"])["status"] == "completed"


class SimulatedCrash(BaseException):
    """The process dies here (not an Exception: nothing in designrun catches it)."""


def test_a_launch_retried_after_a_crash_finds_the_sandbox_by_label(sandbox_app, fake, monkeypatch):
    app = sandbox_app()
    client, token = user_session(app)
    run = create_run(client, token)

    def crash(*args, **kwargs):
        raise SimulatedCrash()

    monkeypatch.setattr(sandboxes, "_update_launching", crash)
    try:
        dispatcher.run_once(app)
    except SimulatedCrash:
        pass
    monkeypatch.undo()
    assert len(fake.created) == 1
    assert sandbox_row(app, run["id"]).sandbox_id is None  # the crash lost the sandbox id
    update_trigger(app, run["id"], claimed_until=None)  # the dead process's lease ran out

    dispatcher.run_once(app)

    assert len(fake.created) == 1, "a second sandbox was created"
    [sandbox] = fake.live()
    assert sandbox_row(app, run["id"]).sandbox_id == sandbox.id
    assert wait_for(lambda: finished(client, token, run["id"]), timeout=60)
    assert get_run(client, token, run["id"])["status"] == "completed"


def test_a_runner_started_before_a_crash_is_not_started_twice(sandbox_app, fake, monkeypatch):
    app = sandbox_app(DAYTONA_AGENT_COMMAND="sleep 30")
    client, token = user_session(app)
    run = create_run(client, token)

    def crash(*args, **kwargs):
        raise SimulatedCrash()

    monkeypatch.setattr(sandboxes, "_mark_running", crash)
    try:
        dispatcher.run_once(app)
    except SimulatedCrash:
        pass
    monkeypatch.undo()
    update_trigger(app, run["id"], claimed_until=None)

    dispatcher.run_once(app)

    [sandbox] = fake.live()
    [command] = fake.commands(sandbox.id)
    assert sandbox_row(app, run["id"]).command_id == command.id
