"""``designrun-runner-check`` end to end: real runner processes against the embedded server.

The project's own runner passes every profile (and a cancel); the runner in
runner_under_test.py passes as written, and each of its defects fails with the one finding that
names it. The reference runners of examples/runners/ pass ``standard`` (skipped when curl or
node is missing). Each check is a subprocess, like CI would run it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from designrun.conformance import cli

REPO = Path(__file__).resolve().parents[2]
UNDER_TEST = [sys.executable, str(Path(__file__).with_name("runner_under_test.py"))]
# Short runs: the demo agent pauses 50 ms per step, the test runner spreads 24 events over 0.5 s.
FAST_DEMO = {"DESIGNRUN_DEMO_DELAY": "0.05"}

pytestmark = pytest.mark.slow


def check(
    *args: str, command: list[str] | None = None, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """Run the kit in this process with --json; return its exit status and its scorecard.

    In-process (the runner is still a real subprocess) to spare each check the interpreter's
    start-up and imports; test_the_human_scorecard… runs the console entry point itself.
    """
    argv = ["--json", *args]
    if command is not None:
        argv += ["--", *command]
    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = cli.main(argv)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert code in (0, 1), out.getvalue()
    return code, json.loads(out.getvalue())


def failed_checks(card: dict[str, Any]) -> list[str]:
    return [finding["check"] for finding in card["findings"]]


@pytest.mark.parametrize("profile", ["smoke", "standard", "hostile"])
def test_designrun_runner_with_the_demo_agent_passes(profile: str) -> None:
    code, card = check("--profile", profile, "--seed", "11", env=FAST_DEMO)
    assert (code, failed_checks(card)) == (0, []), card
    stats = card["stats"]
    assert stats["finalStatus"] == "completed"
    assert stats["artifacts"]["registered"] == 5  # the demo agent's five files
    assert stats["duplicates"] == {"events": 0, "artifacts": 0}
    injected = {kind: n["injected"] for kind, n in stats["faults"].items()}
    assert injected["lost"] >= 1 and injected["refused"] == 1
    if profile != "smoke":
        assert stats["token"]["refreshed"] >= 1  # a 4-5 s token outlived by the run
        assert sum(injected.values()) > 10


def test_designrun_runner_stops_after_a_cancel() -> None:
    code, card = check(
        "--seed", "5", "--cancel", "--cancel-after", "0.5", env={"DESIGNRUN_DEMO_DELAY": "0.5"}
    )
    assert (code, failed_checks(card)) == (0, []), card
    assert card["stats"]["finalStatus"] == "cancelled"
    assert card["stats"]["cancel"]["stoppedAfter"] < 15


@pytest.mark.parametrize("job_via", ["env", "stdin"])
def test_the_runner_under_test_passes_as_written(job_via: str) -> None:
    command = [*UNDER_TEST, "--seconds", "0.5", "--job-from", job_via]
    code, card = check("--seed", "1", "--job-via", job_via, command=command)
    assert (code, failed_checks(card)) == (0, []), card
    assert card["stats"]["events"]["declared"] == 24
    assert card["stats"]["events"]["distinct"] == 24


@pytest.mark.parametrize(
    ("defect", "finding", "extra"),
    [
        ("no-keys", "duplicates", []),
        ("ignore-retry-after", "retry_after", []),
        ("ignore-cancel", "cancel", ["--cancel", "--cancel-after", "0.5"]),
        ("drop-on-retry", "events_lost", []),
        ("no-refresh", "token", ["--token-ttl", "2"]),
    ],
)
def test_a_broken_runner_fails_with_the_finding_that_names_its_defect(
    defect: str, finding: str, extra: list[str]
) -> None:
    # 12 events are enough to meet each fault; no-refresh must outlive its 2 s token.
    seconds = "3" if defect == "no-refresh" else "0.3"
    command = [*UNDER_TEST, "--defect", defect, "--events", "12", "--seconds", seconds]
    code, card = check("--seed", "1", *extra, command=command)
    assert code == 1
    assert failed_checks(card) == [finding], card["findings"]
    (shown,) = card["findings"]
    assert shown["requests"], "every finding names the requests that show it"


def test_the_human_scorecard_names_the_failure_and_its_requests() -> None:
    argv = [sys.executable, "-m", "designrun.conformance.cli", "--seed", "1", "--"]
    argv += [*UNDER_TEST, "--defect", "ignore-retry-after", "--events", "12", "--seconds", "0.3"]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )
    assert result.returncode == 1, result.stderr
    assert "designrun-runner-check: FAIL (1 finding(s))" in result.stdout
    assert "FAIL retry_after:" in result.stdout
    assert "429 Retry-After 1 [rate_limited]" in result.stdout
    assert "rerun with --seed 1" in result.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="the shell runner needs curl")
def test_the_reference_shell_runner_passes_standard() -> None:
    command = ["sh", str(REPO / "examples/runners/shell/runner.sh")]
    code, card = check("--seed", "2", command=command)
    assert (code, failed_checks(card)) == (0, []), card


@pytest.mark.skipif(shutil.which("node") is None, reason="the Node runner needs node")
def test_the_reference_node_runner_passes_standard() -> None:
    command = ["node", str(REPO / "examples/runners/node/runner.mjs")]
    code, card = check("--seed", "2", "--job-via", "stdin", command=command)
    assert (code, failed_checks(card)) == (0, []), card
