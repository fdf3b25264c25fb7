"""designrun-runner's Supervisor against the fake runner API: what ends a run and what does not."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from designrun.runner import RunnerClient
from designrun.runner.cli import Supervisor
from tests.runner.fakeserver import FakeRunnerApi

PROGRESS_THEN_DONE = (
    "print('::designrun:: {\"progress\": 0.5}', flush=True); print('done', flush=True)"
)


def test_a_refused_progress_report_does_not_end_the_run(
    fake: FakeRunnerApi, client_factory: Callable[..., RunnerClient], tmp_path: Path
) -> None:
    # Found by designrun-runner-check: a 400 on one progress report used to escape run() and
    # leave the run "running" with the command orphaned.
    refused = {"ok": False, "error": "refused", "code": "invalid_request"}
    fake.forced["status"] = [
        (200, {"ok": True, "runStatus": "running", "progress": 0.0}, {}),  # "running"
        (400, refused, {}),  # the progress report
    ]
    client = client_factory(fake)
    supervisor = Supervisor(
        client, {}, [sys.executable, "-c", PROGRESS_THEN_DONE], tmp_path, heartbeat=60
    )

    assert supervisor.run() == 0
    assert fake.status == "completed"
    assert fake.outcomes("status") == ["forced", "forced", "ok"]
    client.flush()
    assert [e["message"] for e in fake.events if e["eventType"] == "log.stdout"] == ["done"]
