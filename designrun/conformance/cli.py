"""``designrun-runner-check``: run a runner against an embedded, faulty designrun and score it.

    designrun-runner-check                                   # designrun-runner + the demo agent
    designrun-runner-check --profile hostile --seed 7 --json
    designrun-runner-check --cancel -- designrun-runner --job {job} -- my-agent
    designrun-runner-check --job-via stdin -- node examples/runners/node/runner.mjs

The runner under test gets the job the way ``designrun-runner`` accepts it: ``{job}`` in the
command is replaced by the path of a job file; otherwise ``--job-via env`` (default: DESIGNRUN_JOB
and DESIGNRUN_CALLBACK_URL/RUNNER_TOKEN/PROMPT/CONFIG/RUN_ID) or ``--job-via stdin``.

Exit status: 0 when every check passed, 1 on any finding, 2 when the check itself could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from designrun.conformance.embedded import EmbeddedServer
from designrun.conformance.faults import PROFILES, FaultPlan
from designrun.conformance.scorecard import RunnerOutcome, Scorecard, score

JOB_PLACEHOLDER = "{job}"
DEFAULT_PROMPT = "A calm landing page for a tea shop"
POLL = 0.1
OUTPUT_TAIL = 20
# Variables of the embedded server that must not reach the runner under test.
_SERVER_ONLY = ("RUNNER_AUTH_SECRET", "SECRET_KEY", "DATABASE_URL", "DAYTONA_API_KEY")


def default_command() -> list[str]:
    """``designrun-runner --job {job}`` with the demo agent, from this interpreter."""
    return [sys.executable, "-m", "designrun.runner.cli", "--job", JOB_PLACEHOLDER]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="designrun-runner-check",
        description="Check a designrun runner against an embedded designrun that injects "
        "seeded faults; print a scorecard (exit 1 on any finding).",
        epilog="Profiles: "
        + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
        + ". Without a command: designrun-runner with the demo agent.",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="standard")
    parser.add_argument(
        "--seed", type=int, default=None, help="fault seed (default: random, printed)"
    )
    parser.add_argument("--json", action="store_true", help="print the scorecard as JSON")
    parser.add_argument(
        "--cancel", action="store_true", help="cancel the run half way, as a user would"
    )
    parser.add_argument(
        "--cancel-after",
        type=float,
        default=3.0,
        help="with --cancel: cancel at progress 0.5, or this many seconds after the runner's "
        "first request, whichever comes first (default 3)",
    )
    parser.add_argument(
        "--stop-within",
        type=float,
        default=15.0,
        help="with --cancel: seconds the runner may take to exit after the cancel (default 15)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="kill the runner after this many seconds"
    )
    parser.add_argument(
        "--job-via",
        choices=("file", "stdin", "env"),
        default=None,
        help="how the runner gets the job (default: file when the command has {job}, else env)",
    )
    parser.add_argument(
        "--token-ttl",
        type=int,
        default=None,
        help="runner token lifetime, seconds (default: the profile's)",
    )
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the run's prompt")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the work folder (database, logs) and print its path",
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS…] (the runner under test)"
    )
    return parser


class Check:
    """One check: embedded server, run, runner process, scorecard."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.profile = PROFILES[args.profile]
        self.seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(3), "big")
        self.token_ttl = args.token_ttl or self.profile.token_ttl
        command = list(args.command or [])
        if command[:1] == ["--"]:
            command = command[1:]
        self.command = command or default_command()
        self.job_via = args.job_via or (
            "file" if any(JOB_PLACEHOLDER in c for c in self.command) else "env"
        )
        self.server = EmbeddedServer(workdir, FaultPlan(self.profile, self.seed), self.token_ttl)
        self.log: list[str] = []

    def _spawn(self, job: dict[str, Any]) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k not in _SERVER_ONLY}
        env.setdefault("DESIGNRUN_DEMO_DELAY", "0.2")
        env["PYTHONUNBUFFERED"] = "1"
        command = list(self.command)
        stdin: int = subprocess.DEVNULL
        if self.job_via == "file":
            path = self.workdir / "job.json"
            path.write_text(json.dumps(job))
            path.chmod(0o600)
            command = [c.replace(JOB_PLACEHOLDER, str(path)) for c in command]
        elif self.job_via == "stdin":
            stdin = subprocess.PIPE
        else:
            env.update(
                {
                    "DESIGNRUN_JOB": json.dumps(job),
                    "DESIGNRUN_CALLBACK_URL": job["callbackUrl"],
                    "DESIGNRUN_RUNNER_TOKEN": job["runnerToken"],
                    "DESIGNRUN_PROMPT": job["prompt"],
                    "DESIGNRUN_CONFIG": json.dumps(job["config"]),
                    "DESIGNRUN_RUN_ID": job["runId"],
                }
            )
        with (
            (self.workdir / "runner.out").open("wb") as out,
            (self.workdir / "runner.err").open("wb") as err,
        ):
            process = subprocess.Popen(  # noqa: S603 - the command the user asked to check
                command,
                stdin=stdin,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        if process.stdin is not None:
            try:
                process.stdin.write(json.dumps(job).encode())
                process.stdin.close()
            except BrokenPipeError:
                pass
        return process

    def run(self) -> tuple[Scorecard, dict[str, Any]]:
        self.server.start()
        try:
            job = self.server.create_run(self.args.prompt, {})
            started = time.monotonic()
            self.server.injector.started = started  # request times count from the runner's start
            process = self._spawn(job)
            try:
                cancel_at, timed_out = self._watch(process, started)
            except BaseException:  # Ctrl-C included: never leave the runner behind
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                raise
            exited_at = self.server.injector.now()
            self.server.injector.wait_idle(timeout=5.0)
            outcome = RunnerOutcome(
                exit_code=None if timed_out else process.returncode,
                duration=time.monotonic() - started,
                timed_out=timed_out,
                cancel_at=cancel_at,
                exited_at=exited_at,
                stop_bound=self.args.stop_within,
                token_ttl=self.token_ttl,
                cancel_requested=self.args.cancel,
            )
            card = score(self.server.injector.exchanges, self.server.state(), outcome)
            self.log = [e.describe() for e in self.server.injector.exchanges]
        finally:
            self.server.stop()
        return card, self._context()

    def _watch(self, process: subprocess.Popen[bytes], started: float) -> tuple[float | None, bool]:
        cancel_at: float | None = None
        injector = self.server.injector
        deadline = started + self.args.timeout
        while process.poll() is None:
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return cancel_at, True
            if self.args.cancel and cancel_at is None and injector.exchanges:
                status, progress = self.server.progress()
                first = injector.exchanges[0].arrived
                if status == "running" and (
                    progress >= 0.5 or injector.now() - first >= self.args.cancel_after
                ):
                    if self.server.cancel() == "cancelled":
                        cancel_at = injector.now()
            time.sleep(POLL)
        return cancel_at, False

    def _context(self) -> dict[str, Any]:
        def tail(name: str) -> list[str]:
            path = self.workdir / name
            text = path.read_text(errors="replace") if path.exists() else ""
            return text.splitlines()[-OUTPUT_TAIL:]

        return {
            "profile": self.profile.name,
            "seed": self.seed,
            "tokenTtl": self.token_ttl,
            "jobVia": self.job_via,
            "command": self.command,
            "runnerStdout": tail("runner.out"),
            "runnerStderr": tail("runner.err"),
            "requests": self.log,
        }


def render(card: Scorecard, context: dict[str, Any]) -> str:
    """The human-readable scorecard."""
    stats = card.stats
    verdict = "PASS" if card.ok else f"FAIL ({len(card.findings)} finding(s))"
    lines = [
        f"designrun-runner-check: {verdict}",
        f"  profile {context['profile']}, seed {context['seed']} (rerun with --seed "
        f"{context['seed']}), token TTL {context['tokenTtl']}s, job via {context['jobVia']}",
        f"  runner: {' '.join(context['command'])}",
        f"  exit {stats.get('exitCode')} after {stats.get('runnerSeconds')}s; run "
        f"{stats.get('finalStatus')}; {stats.get('requests')} requests",
    ]
    events = stats.get("events", {})
    lines.append(
        f"  events: declared {events.get('declared')}, stored {events.get('stored')} "
        f"({events.get('distinct')} distinct), refused by the kit {events.get('refusedByKit')}; "
        f"duplicates {stats.get('duplicates', {}).get('events')}; order checked on "
        f"{stats.get('orderChecked', 0)}"
    )
    artifacts = stats.get("artifacts", {})
    lines.append(
        f"  artifacts: declared {artifacts.get('declared')}, uploads {artifacts.get('attempted')}, "
        f"registered {artifacts.get('registered')}"
    )
    faults = ", ".join(
        f"{kind} {n['injected']} (retried {n['retried']})"
        for kind, n in stats.get("faults", {}).items()
        if n["injected"]
    )
    lines.append(f"  faults: {faults or 'none'}")
    waits = stats.get("retryAfterWaits") or []
    if waits:
        lines.append(f"  Retry-After waits: {', '.join(f'{w:.2f}s' for w in waits)}")
    token = stats.get("token", {})
    lines.append(
        f"  token: refreshed {token.get('refreshed')} time(s), {token.get('tokensUsed')} token(s) "
        f"used, expired uses {token.get('expiredUses')}; "
        f"4xx retried {stats.get('clientErrorsRetried')}"
    )
    if "cancel" in stats:
        cancel = stats["cancel"]
        if cancel["at"] is None:
            lines.append(f"  cancel: {cancel['note']}")
        else:
            lines.append(
                f"  cancel: at {cancel['at']}s, runner stopped {cancel['stoppedAfter']}s later"
            )
    for finding in card.findings:
        lines.append(f"  FAIL {finding.check}: {finding.message}")
        lines += [f"      {request}" for request in finding.requests]
    if not card.ok and context["runnerStderr"]:
        lines.append("  runner stderr (tail):")
        lines += [f"      {line}" for line in context["runnerStderr"][-10:]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``designrun-runner-check`` console script."""
    args = build_parser().parse_args(argv)
    keep = tempfile.mkdtemp(prefix="designrun-check-") if args.keep else None
    with tempfile.TemporaryDirectory(prefix="designrun-check-") as temporary:
        workdir = Path(keep or temporary)
        try:
            card, context = Check(args, workdir).run()
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"designrun-runner-check: could not run the check: {exc}\n")
            return 2
    if args.json:
        sys.stdout.write(json.dumps({**card.as_dict(), **context}, indent=2) + "\n")
    else:
        sys.stdout.write(render(card, context) + "\n")
        if keep:
            sys.stdout.write(f"  work folder kept: {keep}\n")
    return 0 if card.ok else 1


if __name__ == "__main__":
    sys.exit(main())
