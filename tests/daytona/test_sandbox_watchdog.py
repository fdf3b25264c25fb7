"""The Daytona watchdog and clean-up: a runner that exits without a final status fails its run
with the tail of its logs; a broken sandbox fails the run with Daytona's reason; cancel, delete
and finished runs have their sandbox deleted; orphans are deleted at start-up."""

from __future__ import annotations

import uuid

from designrun import background
from designrun.triggers import dispatcher, sandboxes
from tests.daytona.test_sandbox_runs import finished, sandbox_row
from tests.factories import bearer, make_run, make_user
from tests.triggers.support import (
    create_run,
    get_events,
    get_run,
    user_session,
    wait_for,
)

# A runner that dies before reporting: 50 numbered lines, then exit 3 (no status sent).
DYING_RUNNER = "for i in $(seq 1 50); do echo line-$i; done; echo 'Traceback: boom' >&2; exit 3"


def test_runner_exiting_without_final_status_fails_run_with_log_tail(
    sandbox_app, fake, monkeypatch, tmp_path
):
    script = tmp_path / "bin" / "designrun-runner"
    script.parent.mkdir()
    script.write_text(f"#!/bin/bash\n{DYING_RUNNER}\n")
    script.chmod(0o755)
    monkeypatch.setattr(fake, "path_prefix", str(script.parent))
    monkeypatch.setattr(sandboxes, "LOG_SETTLE_SECONDS", 0.6)  # > the fake's 0.5 s log lag
    app = sandbox_app()
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)
    [sandbox] = fake.live()
    [command] = fake.commands(sandbox.id)
    assert wait_for(lambda: command.exit_code is not None)

    assert wait_for(lambda: (sandboxes.watch_once(app), finished(client, token, run["id"]))[1])

    stored = get_run(client, token, run["id"])
    assert stored["status"] == "failed"
    assert stored["failureReason"] == "runner_exited"
    assert "exited with code 3 before reporting a final status" in stored["error"]
    [event] = get_events(client, token, run["id"])
    assert event["eventType"] == "error"
    # The tail, read after the exit code was seen, has the lines Daytona flushed last.
    assert event["message"].endswith("line-50\nTraceback: boom"), event["message"]
    assert ":\nline-12\n" in event["message"] and "line-11\n" not in event["message"]  # 40
    assert wait_for(lambda: (sandboxes.watch_once(app), not fake.live())[1])


def test_sandbox_in_error_fails_run_with_daytonas_reason(sandbox_app, fake):
    app = sandbox_app(DAYTONA_AGENT_COMMAND="sleep 30")
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)
    [sandbox] = fake.live()
    fake.set_state(sandbox.id, "error", "the runner host ran out of disk")

    sandboxes.watch_once(app)

    stored = get_run(client, token, run["id"])
    assert stored["status"] == "failed"
    assert "the runner host ran out of disk" in stored["error"]
    assert stored["failureReason"] == "runner_exited"
    assert [e["eventType"] for e in get_events(client, token, run["id"])] == ["error"]
    sandboxes.watch_once(app)
    assert fake.live() == []


def test_running_sandbox_is_kept_active_and_a_stopped_one_fails_the_run(sandbox_app, fake):
    app = sandbox_app(DAYTONA_AGENT_COMMAND="sleep 30")
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)
    [sandbox] = fake.live()

    sandboxes.watch_once(app)

    assert sandbox.activity == 1  # auto-stop does not count a running process as activity
    assert get_run(client, token, run["id"])["status"] in {"queued", "running"}
    fake.set_state(sandbox.id, "stopped")
    sandboxes.watch_once(app)
    stored = get_run(client, token, run["id"])
    assert stored["status"] == "failed"
    assert "the Daytona sandbox is stopped" in stored["error"]


def test_sandbox_that_disappeared_fails_the_run(sandbox_app, fake):
    app = sandbox_app(DAYTONA_AGENT_COMMAND="sleep 30")
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)
    [sandbox] = fake.live()
    fake.delete_behind_our_back(sandbox.id)

    sandboxes.watch_once(app)

    stored = get_run(client, token, run["id"])
    assert stored["status"] == "failed"
    assert "the Daytona sandbox disappeared" in stored["error"]


def test_daytona_unreachable_while_watching_does_not_fail_the_run(sandbox_app, fake):
    app = sandbox_app(DAYTONA_AGENT_COMMAND="sleep 30")
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)
    fake.fail("GET", r"^/api/sandbox/", 500, times=1)

    sandboxes.watch_once(app)

    assert get_run(client, token, run["id"])["status"] in {"queued", "running"}
    row = sandbox_row(app, run["id"])
    assert row.attempts == 1 and "injected failure" in row.last_error
    assert row.claimed_until is None and row.state == "running"


def test_cancelled_run_has_its_sandbox_deleted_on_the_next_pass(sandbox_app, fake):
    # A long watch interval: only the cancel's transition hook makes the row due at once.
    app = sandbox_app(
        DAYTONA_AGENT_COMMAND="sleep 30", DAYTONA_KEEP_SECONDS=3600, DAYTONA_WATCH_INTERVAL=3600
    )
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)
    [sandbox] = fake.live()
    [command] = fake.commands(sandbox.id)
    sandboxes.watch_once(app)
    assert fake.live() == [sandbox]  # not due yet

    r = client.post(f"/api/design/runs/{run['id']}/cancel", headers=bearer(token))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["run"]["failureReason"] == "cancelled_by_user"
    assert fake.live() == [sandbox]  # the request did not wait for Daytona

    sandboxes.watch_once(app)

    assert fake.live() == [] and fake.deleted == [sandbox.id]  # no keeping for a cancel
    assert command.process.poll() is not None  # the runner went with its sandbox
    assert sandbox_row(app, run["id"]).state == "deleted"


def test_deleted_run_has_its_sandbox_deleted(sandbox_app, fake):
    app = sandbox_app(DAYTONA_AGENT_COMMAND="sleep 30", DAYTONA_WATCH_INTERVAL=3600)
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)
    [sandbox] = fake.live()

    r = client.delete(f"/api/design/runs/{run['id']}", headers=bearer(token))
    assert r.status_code == 200, r.get_json()
    assert fake.live() == [sandbox]  # the request did not wait for Daytona

    sandboxes.watch_once(app)

    assert fake.live() == []
    assert sandbox_row(app, run["id"]) is None  # the row went with its run


def test_finished_run_keeps_its_sandbox_for_keep_seconds(sandbox_app, fake):
    app = sandbox_app(DAYTONA_KEEP_SECONDS=3600)
    client, token = user_session(app)
    run = create_run(client, token)
    dispatcher.run_once(app)
    assert wait_for(lambda: finished(client, token, run["id"]), timeout=60)

    sandboxes.watch_once(app)

    assert len(fake.live()) == 1
    row = sandbox_row(app, run["id"])
    assert row.state == "finished" and row.delete_after is not None


def test_orphaned_sandboxes_are_deleted_at_start_up(sandbox_app, fake):
    app = sandbox_app()
    user = make_user(app)
    mine = sandboxes.instance_label(app.config)
    active = make_run(app, user, status="running")
    done = make_run(app, user, status="completed")
    keep_active = fake.add_sandbox({"designrun.instance": mine, "designrun.run_id": str(active.id)})
    orphan_done = fake.add_sandbox({"designrun.instance": mine, "designrun.run_id": str(done.id)})
    orphan_unknown = fake.add_sandbox({"designrun.instance": mine, "designrun.run_id": "nope"})
    orphan_gone = fake.add_sandbox(
        {"designrun.instance": mine, "designrun.run_id": str(uuid.uuid4())}
    )
    other_install = fake.add_sandbox({"designrun.instance": "0123456789abcdef"})

    background.start(app)
    try:
        assert wait_for(lambda: len(fake.deleted) >= 3, timeout=30)
    finally:
        background.stop(app)

    assert sorted(fake.deleted) == sorted([orphan_done, orphan_unknown, orphan_gone])
    assert {s.id for s in fake.live()} == {keep_active, other_install}
    # A second pass right after (another worker starting) does nothing.
    assert sandboxes.clean_orphans_once(app) == 0
