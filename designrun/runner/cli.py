"""``designrun-runner``: run a command for a design run and report it to designrun.

    designrun-runner --job job.json -- my-agent --flag
    designrun-runner --job - < job.json                 # default command: the demo agent
    DESIGNRUN_JOB='{"callbackUrl": …}' designrun-runner -- my-agent

The job is API.md's job request (``callbackUrl`` and ``runnerToken``/``runnerSecret``; ``prompt``,
``config`` and ``runId`` are handed to the command). The runner reports ``running``, streams the
command's stdout and stderr lines as ``log.stdout``/``log.stderr`` events in order, understands the
line protocol on stdout (docs/runner.md), uploads the files the command leaves in its output folder,
stops the command (TERM, then KILL) when the run is cancelled, and finishes with ``completed`` or
``failed`` (with the tail of stderr) from the exit code.

Imports nothing server-side: this is what a Daytona image runs.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import mimetypes
import os
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from designrun.agents.protocol import parse_line
from designrun.runner.client import RunnerClient
from designrun.runner.wire import RunCancelled, RunnerError

log = logging.getLogger("designrun.runner")

MANIFEST = "designrun-artifacts.json"
DEFAULT_COMMAND = [sys.executable, "-m", "designrun.agents.demo"]
STDERR_TAIL_LINES = 40
MAX_ERROR_CHARS = 10_000
MAX_MESSAGE_CHARS = 65_536

# Artifact type by file kind, for files without a manifest entry or protocol declaration.
_TYPES = {
    ".html": "source",
    ".htm": "source",
    ".css": "source",
    ".js": "source",
    ".ts": "source",
    ".tsx": "source",
    ".jsx": "source",
    ".py": "source",
    ".svg": "image",
    ".png": "screenshot",
    ".jpg": "screenshot",
    ".jpeg": "screenshot",
    ".webp": "screenshot",
    ".gif": "image",
    ".md": "report",
    ".txt": "report",
    ".pdf": "report",
    ".json": "data",
    ".zip": "archive",
    ".tar": "archive",
    ".gz": "archive",
}


def artifact_type_for(path: Path) -> str:
    """The artifact type of a file by its extension (``file`` when unknown)."""
    return _TYPES.get(path.suffix.lower(), "file")


def load_job(source: str | None) -> dict[str, Any]:
    """The job request: a file, ``-`` (stdin), DESIGNRUN_JOB, or DESIGNRUN_CALLBACK_URL + TOKEN."""
    if source == "-":
        job = json.load(sys.stdin)
    elif source:
        job = json.loads(Path(source).read_text())
    elif os.environ.get("DESIGNRUN_JOB"):
        job = json.loads(os.environ["DESIGNRUN_JOB"])
    elif os.environ.get("DESIGNRUN_CALLBACK_URL"):
        job = {
            "callbackUrl": os.environ["DESIGNRUN_CALLBACK_URL"],
            "runnerToken": os.environ.get("DESIGNRUN_RUNNER_TOKEN", ""),
            "prompt": os.environ.get("DESIGNRUN_PROMPT", ""),
            "config": json.loads(os.environ.get("DESIGNRUN_CONFIG") or "{}"),
        }
    else:
        raise SystemExit("designrun-runner: no job (use --job FILE, --job -, or DESIGNRUN_JOB)")
    if not isinstance(job, dict) or not job.get("callbackUrl"):
        raise SystemExit("designrun-runner: the job needs a callbackUrl")
    if not (job.get("runnerToken") or job.get("runnerSecret")):
        raise SystemExit("designrun-runner: the job needs a runnerToken (or runnerSecret)")
    return job


class Terminated(Exception):
    """SIGTERM reached the runner (raised in the main thread by its signal handler)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    # Once: a second TERM must not interrupt the clean-up the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


class Supervisor:
    """Runs one command for one run and keeps the server informed."""

    def __init__(
        self,
        client: RunnerClient,
        job: dict[str, Any],
        command: Sequence[str],
        output_dir: Path,
        heartbeat: float = 5.0,
        kill_grace: float = 5.0,
    ) -> None:
        self.client = client
        self.job = job
        self.command = list(command)
        self.output_dir = output_dir
        self.heartbeat = heartbeat
        self.kill_grace = kill_grace
        self.uploaded: set[Path] = set()
        self.declared: dict[Path, dict[str, Any]] = {}
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.progress = 0.0
        self.process: subprocess.Popen[bytes] | None = None

    # --- the command ----------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("DESIGNRUN_JOB", "DESIGNRUN_RUNNER_TOKEN"):
            env.pop(name, None)  # the command never needs the run's credentials
        env.update(
            {
                "DESIGNRUN_RUN_ID": str(self.job.get("runId") or self.client.run_id),
                "DESIGNRUN_PROMPT": str(self.job.get("prompt") or ""),
                "DESIGNRUN_CONFIG": json.dumps(self.job.get("config") or {}),
                "DESIGNRUN_OUTPUT_DIR": str(self.output_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - the operator's configured command
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.output_dir,
            env=self._environment(),
            start_new_session=True,  # its own process group: TERM/KILL reach its children too
        )

    def _stop(self) -> None:
        """TERM the command's process group, then KILL it after the grace period."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    # --- what the command says --------------------------------------------------------------

    def _handle_line(self, stream: str, line: str) -> None:
        if stream == "stderr":
            self.stderr_tail.append(line)
        try:
            payload = parse_line(line) if stream == "stdout" else None
        except ValueError as exc:
            self.client.event("runner.warning", f"unreadable protocol line: {exc}")
            payload = None
        if payload is None:
            self._event(f"log.{stream}", line[:MAX_MESSAGE_CHARS])
            return
        self._handle_protocol(payload)

    def _event(self, event_type: str, message: str | None, metadata: Any = None) -> None:
        """Queue an event; one the server would refuse becomes a warning, never a crash."""
        try:
            self.client.event(event_type, message, metadata)
        except (ValueError, TypeError) as exc:
            self.client.event("runner.warning", f"dropped an invalid {event_type!r} event: {exc}")

    def _handle_protocol(self, payload: dict[str, Any]) -> None:
        event = payload.get("event")
        if isinstance(event, dict) and isinstance(event.get("eventType"), str):
            metadata = event.get("metadata")
            message = event.get("message")
            self._event(
                event["eventType"][:100],
                message[:MAX_MESSAGE_CHARS] if isinstance(message, str) else None,
                metadata if isinstance(metadata, dict) else None,
            )
        artifact = payload.get("artifact")
        if isinstance(artifact, dict) and isinstance(artifact.get("path"), str):
            self._upload(self._resolve(artifact["path"]), artifact)
        progress = payload.get("progress")
        if isinstance(progress, int | float) and not isinstance(progress, bool):
            self.progress = min(1.0, max(0.0, float(progress)))
            self._report_progress()

    def _resolve(self, path: str) -> Path:
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.output_dir / candidate
        return candidate.resolve()

    def _upload(self, path: Path, declared: dict[str, Any] | None = None) -> None:
        if path in self.uploaded:
            return
        declared = declared or self.declared.get(path) or {}
        if not path.is_file():
            self.client.event("runner.warning", f"artifact not found: {path.name}")
            return
        try:
            relative = path.relative_to(self.output_dir.resolve()).as_posix()
        except ValueError:
            relative = path.name
        metadata = dict(declared.get("metadata") or {})
        metadata.setdefault("path", relative)
        content_type = declared.get("contentType") or mimetypes.guess_type(path.name)[0]
        try:
            self.client.upload_artifact(
                path,
                str(declared.get("artifactType") or artifact_type_for(path)),
                content_type=content_type,
                metadata=metadata,
            )
        except RunCancelled:
            raise
        except RunnerError as exc:
            self.client.event("runner.warning", f"upload of {relative} failed: {exc}")
            return
        self.uploaded.add(path)

    def _read_manifest(self) -> None:
        manifest = self.output_dir / MANIFEST
        if not manifest.is_file():
            return
        try:
            entries = json.loads(manifest.read_text())
        except ValueError:
            self.client.event("runner.warning", f"{MANIFEST} is not valid JSON")
            return
        if isinstance(entries, dict):
            entries = [
                {"path": k, **(v if isinstance(v, dict) else {})} for k, v in entries.items()
            ]
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                self.declared[self._resolve(entry["path"])] = entry

    def _upload_outputs(self) -> None:
        """Upload every file in the output folder not uploaded yet (the manifest excluded)."""
        self._read_manifest()
        for path in sorted(p.resolve() for p in self.output_dir.rglob("*") if p.is_file()):
            if path.name != MANIFEST:
                self._upload(path)

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> int:
        """Run the command to the end; return the exit code this CLI should exit with."""
        try:
            self.client.set_status("running")
        except RunCancelled:
            log.info("run %s was finished before it started", self.client.run_id)
            return 0
        lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        try:
            self.process = self._start()
        except OSError as exc:
            self.client.event("error", f"could not start the command: {exc}")
            self.client.set_status("failed", error=f"could not start {self.command[0]}: {exc}")
            return 127
        assert self.process.stdout is not None and self.process.stderr is not None  # noqa: S101
        readers = [
            threading.Thread(
                target=_pump, args=(self.process.stdout, "stdout", lines), daemon=True
            ),
            threading.Thread(
                target=_pump, args=(self.process.stderr, "stderr", lines), daemon=True
            ),
        ]
        for reader in readers:
            reader.start()
        open_streams = 2
        last_beat = time.monotonic()
        try:
            while open_streams:
                try:
                    stream, line = lines.get(timeout=0.5)
                except queue.Empty:
                    stream, line = "", None
                if line is None:
                    open_streams -= 1 if stream else 0
                else:
                    self._handle_line(stream, line)
                if time.monotonic() - last_beat >= self.heartbeat:
                    last_beat = time.monotonic()
                    self._report_progress()
            code = self.process.wait()
            self._upload_outputs()
        except RunCancelled:
            self.client.event("runner.cancelled", "the run was cancelled; stopping the command")
            self._stop()
            self._flush_quietly()
            return 0
        except Terminated:
            # The host stops us (a local run's cancel, a sandbox shutting down): stop the
            # command too, which runs in its own session and would otherwise outlive us.
            self.client.event("runner.stopped", "the runner was told to stop (SIGTERM)")
            self._stop()
            self._flush_quietly()
            return 143
        if code == 0:
            self._finish("completed", None)
        else:
            tail = "\n".join(self.stderr_tail)[-MAX_ERROR_CHARS:]
            self._finish(
                "failed", f"command exited with code {code}" + (f":\n{tail}" if tail else "")
            )
        return code

    def _report_progress(self) -> None:
        """Report progress (a liveness beat too); RunCancelled (409) stops the command.

        Any other failure is not worth the run: a progress report the server refused (4xx) or
        that ran out of retries is logged, and the next one carries the same information.
        """
        try:
            self.client.set_progress(self.progress)
        except RunCancelled:
            raise
        except RunnerError as exc:
            log.warning("run %s: progress report not sent: %s", self.client.run_id, exc)

    def _finish(self, status: str, error: str | None) -> None:
        try:
            if status == "completed":
                self.client.set_status(status, progress=1.0)
            else:
                self.client.set_status(status, error=error)
        except RunCancelled:
            log.info("run %s was already finished by someone else", self.client.run_id)

    def _flush_quietly(self) -> None:
        try:
            self.client.flush()
        except RunnerError:
            log.warning("run %s: some log lines could not be sent", self.client.run_id)


def _pump(stream: IO[bytes], name: str, lines: queue.Queue[tuple[str, str | None]]) -> None:
    """Forward each line of a pipe, then a None marking its end; the pipe is closed after."""
    with stream:
        for raw in iter(stream.readline, b""):
            # NUL cannot be stored (PostgreSQL) and the client refuses it: make it visible.
            text = raw.decode("utf-8", "replace").rstrip("\r\n").replace("\x00", "\ufffd")
            lines.put((name, text))
    lines.put((name, None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="designrun-runner",
        description="Run a command for a designrun job and report status, logs and artifacts.",
        epilog="The command gets DESIGNRUN_PROMPT, DESIGNRUN_CONFIG, DESIGNRUN_RUN_ID and "
        "DESIGNRUN_OUTPUT_DIR, and may print '::designrun:: {json}' lines (see docs/runner.md). "
        "Without a command the demo design agent runs.",
    )
    parser.add_argument(
        "--job", help="job request JSON file, or - for stdin (default: $DESIGNRUN_JOB)"
    )
    parser.add_argument(
        "--output-dir", help="folder the command writes artifacts to (default: a temporary one)"
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=5.0,
        help="seconds between liveness reports that also detect cancellation (default 5)",
    )
    parser.add_argument(
        "--kill-grace",
        type=float,
        default=5.0,
        help="seconds between TERM and KILL when the run is cancelled (default 5)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS…]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``designrun-runner`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    command = [c for c in args.command if c != "--"] if args.command else []
    if not command:
        configured = os.environ.get("DESIGNRUN_COMMAND")
        command = shlex.split(configured) if configured else DEFAULT_COMMAND
    job = load_job(args.job)
    temporary = None
    if args.output_dir:
        output_dir = Path(args.output_dir).resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
    else:
        temporary = tempfile.TemporaryDirectory(prefix="designrun-run-")
        output_dir = Path(temporary.name)
    client = RunnerClient.from_job(job)
    log.info("run %s: running %s", client.run_id, shlex.join(command))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        supervisor = Supervisor(client, job, command, output_dir, args.heartbeat, args.kill_grace)
        return supervisor.run()
    except RunnerError as exc:
        log.error("run %s: %s", client.run_id, exc)
        return 1
    finally:
        client.close()
        if temporary is not None:
            temporary.cleanup()


if __name__ == "__main__":
    sys.exit(main())
