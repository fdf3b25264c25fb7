"""The built-in local runner: runs ``designrun-runner`` as a subprocess of the service.

A local run goes through exactly the same HTTP callbacks as a remote runner (the job request is
the ``jobs`` one, handed to the subprocess on stdin). At most LOCAL_RUNNER_CONCURRENCY runs
execute at once on this host; the rest stay ``queued`` with their trigger row due.

State every process of the host can see (nothing lives only in one worker's memory):

- ``instance/local-runner.lock``: only the process holding its exclusive ``flock`` launches
  local runs (the *supervisor*; it writes its pid into the file). The kernel drops the lock when
  that process dies, however it dies (a gunicorn timeout's SIGKILL included), and the next
  dispatcher pass of any worker takes the role over: it is never lost for good.
- ``instance/local-runs/<runId>.pid``: one file per launched runner process (pid and the
  process's start time, so a recycled pid is never mistaken for it), and ``<runId>.log``, its
  stderr. Runner processes outlive the worker that launched them (gunicorn recycles workers)
  and even the server; the files say what still runs, after any restart.

``sweep`` (a background Sweep in every serving process, also run right after a cancel commits)
reads those files: the live ones are the concurrency count; a live process whose run is already
terminal (cancelled from any worker or host) is stopped, TERM then KILL; a dead one whose run
is not terminal fails the run as ``runner_exited``, with the last lines of its stderr.

The subprocess calls back to the service's own address (LOCAL_RUNNER_ORIGIN, else the address
this server is bound to, decided by the process that launches it: never a request's ``Host``)
and gets an allow-listed environment (agents run as the service's OS user; see docs/runner.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select

from designrun.extensions import db
from designrun.models import FailureReason, Run, RunStatus
from designrun.services import hooks, runs
from designrun.triggers.jobs import TriggerError, job_body

log = logging.getLogger(__name__)

_EXTENSION = "designrun.local_runner"
DEFAULT_COMMAND = [sys.executable, "-m", "designrun.agents.demo"]
KILL_GRACE = 3.0  # seconds the runner gives its command between TERM and KILL
KILL_AFTER = 7.0  # seconds after our TERM before the runner and its command are KILLed
STDERR_TAIL = 20  # lines of a dead runner's stderr put in the run's error event
BIND_ORIGIN = "LOCAL_RUNNER_BIND_ORIGIN"  # app.config key set by background.start

# The only variables of the service's environment a runner process gets (plus LOCAL_RUNNER_ENV
# and the demo agent's DESIGNRUN_DEMO_*): never secrets, database URLs or cloud credentials.
ENV_ALLOW = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "SHELL"}
)
ENV_ALLOW_PREFIXES = ("LC_", "DESIGNRUN_DEMO_")


def runner_command(config: Mapping[str, Any]) -> list[str]:
    """The ``designrun-runner`` invocation for the configured LOCAL_RUNNER_COMMAND."""
    configured = config.get("LOCAL_RUNNER_COMMAND")
    agent = shlex.split(configured) if configured else DEFAULT_COMMAND
    heartbeat = str(config.get("LOCAL_RUNNER_HEARTBEAT") or 2.0)
    return [
        sys.executable,
        "-m",
        "designrun.runner.cli",
        "--job",
        "-",
        "--heartbeat",
        heartbeat,
        "--kill-grace",
        str(KILL_GRACE),
        "--",
        *agent,
    ]


def runner_environment(config: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed environment of a runner process (issue: secrets must not leak)."""
    extra = set(config.get("LOCAL_RUNNER_ENV") or ())
    return {
        name: value
        for name, value in environ.items()
        if name in ENV_ALLOW or name in extra or name.startswith(ENV_ALLOW_PREFIXES)
    }


def _with_request_id(env: dict[str, str], body: Mapping[str, Any]) -> dict[str, str]:
    """The run's request id (docs/operations.md) for designrun.runner, when the job has one."""
    if body.get("requestId"):
        env["DESIGNRUN_REQUEST_ID"] = str(body["requestId"])
    return env


def callback_origin(config: Mapping[str, Any]) -> str:
    """Where a local runner calls back: LOCAL_RUNNER_ORIGIN, else this server's bind address.

    Raises TriggerError when neither is known (e.g. gunicorn bound to a Unix socket).
    """
    origin = config.get("LOCAL_RUNNER_ORIGIN") or config.get(BIND_ORIGIN)
    if not origin:
        raise TriggerError(
            "the local runner does not know this server's address: set LOCAL_RUNNER_ORIGIN"
        )
    return str(origin).rstrip("/")


@dataclass(frozen=True)
class Launched:
    """One runner process, as its pid file records it."""

    run_id: uuid.UUID
    pid: int
    start_time: str | None

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start_time if self.start_time else _alive(self.pid)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            raw = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (None: gone, or a zombie)."""
    fields = _proc_stat(pid)
    if fields is None or fields[0] in {"Z", "X"}:
        return None
    return fields[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _descendant_groups(pid: int) -> set[int]:
    """Process groups of ``pid``'s descendants (the runner's command runs in its own session)."""
    children: dict[int, list[int]] = {}
    groups: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _proc_stat(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
            groups[int(entry)] = int(fields[2])
    found: set[int] = set()
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.add(groups.get(child, child))
        todo.extend(children.get(child, []))
    return found


class LocalRunner:
    """This process's view of the host's local runs (see the module docstring)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.limit = int(app.config["LOCAL_RUNNER_CONCURRENCY"])
        self.lock_path = Path(app.instance_path) / "local-runner.lock"
        self.runs_dir = Path(app.instance_path) / "local-runs"
        self._lock_fd: int | None = None
        self._guard = threading.Lock()
        self.children: dict[uuid.UUID, subprocess.Popen[bytes]] = {}
        self.reserved: set[uuid.UUID] = set()  # triggers holding a slot, not launched yet
        # pid → (when we sent TERM, the process groups to KILL if it is still alive later)
        self._stopping: dict[int, tuple[float, set[int]]] = {}

    # --- the supervisor role and the slots ------------------------------------------------------

    def is_supervisor(self) -> bool:
        """True when this process holds (or now takes) the host-wide launcher lock."""
        if self._lock_fd is not None:
            return True
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def launched(self) -> list[Launched]:
        """Every runner process with a pid file on this host (alive or not)."""
        found = []
        for path in sorted(self.runs_dir.glob("*.pid")):
            try:
                data = json.loads(path.read_text())
                found.append(Launched(uuid.UUID(path.stem), int(data["pid"]), data.get("start")))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or just removed
        return found

    def reserve(self, trigger_id: uuid.UUID) -> bool:
        """Take a slot for a run about to be launched; False when none is free here.

        Live runner processes are counted from their pid files, so runs launched by a worker
        that has exited, or before a restart, still count. Reserved before the trigger is
        claimed, so two dispatcher passes running at once cannot both fill the last slot.
        """
        if not self.is_supervisor():
            return False
        with self._guard:
            running = sum(1 for item in self.launched() if item.alive())
            if running + len(self.reserved) >= self.limit:
                return False
            self.reserved.add(trigger_id)
            return True

    def release(self, trigger_id: uuid.UUID) -> None:
        """Give back the trigger's slot if it was not used (no-op once launched)."""
        with self._guard:
            self.reserved.discard(trigger_id)

    # --- launching ------------------------------------------------------------------------------

    def launch(self, trigger_id: uuid.UUID, run: Run, origin: str | None = None) -> None:
        """Start the runner subprocess for ``run`` in a reserved slot (released either way).

        ``origin`` (the create request's) is ignored: a local runner calls back to this server
        itself. Raises TriggerError when it does not know where that is, OSError when the
        subprocess cannot be started.
        """
        try:
            callback = callback_origin(self.app.config)
        except TriggerError:
            self.release(trigger_id)
            raise
        config = {**self.app.config, "EXPO_PUBLIC_WORKER_ORIGIN": callback}
        body = job_body(config, run, callback)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.runs_dir / f"{run.id}.log"
        try:
            with log_path.open("ab") as stderr:
                process = subprocess.Popen(  # noqa: S603 - the operator's configured command
                    runner_command(config),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=_with_request_id(runner_environment(config, os.environ), body),
                    start_new_session=True,
                )
        except OSError:
            self.release(trigger_id)
            raise
        self._write_pid_file(run.id, process.pid)
        with self._guard:
            self.reserved.discard(trigger_id)
            self.children[run.id] = process
        if process.stdin is not None:
            try:
                process.stdin.write(json.dumps(body).encode())
                process.stdin.close()
            except OSError:
                log.warning("run_id=%s: the local runner exited before reading its job", run.id)
        log.info("run_id=%s: local runner started (pid %s, %s)", run.id, process.pid, callback)
        threading.Thread(
            target=self._watch, args=(run.id, process), name=f"dr-local-{run.id}", daemon=True
        ).start()

    def _write_pid_file(self, run_id: uuid.UUID, pid: int) -> None:
        target = self.runs_dir / f"{run_id}.pid"
        tmp = self.runs_dir / f".{run_id}.pid.{os.getpid()}"
        tmp.write_text(json.dumps({"pid": pid, "start": _start_time(pid)}))
        tmp.replace(target)  # atomic: a reader sees no file or a whole one

    def _watch(self, run_id: uuid.UUID, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        with self._guard:
            self.children.pop(run_id, None)
        with self.app.app_context():
            try:
                self._exited(run_id, f"the local runner exited with code {code}")
            except Exception:
                log.exception("run_id=%s: could not record the local runner's exit", run_id)
            finally:
                db.session.remove()
        hooks.work_committed(self.app)  # a slot is free: start the next queued run

    # --- what any process of the host does -----------------------------------------------------

    def _exited(self, run_id: uuid.UUID, how: str) -> bool:
        """The runner process is gone: fail its run if it is not terminal, drop its files."""
        tail = self._stderr_tail(run_id)
        message = f"{how} before reporting a final status"
        if tail:
            message += ". Its last lines of stderr:\n" + tail
        failed = runs.fail_run(
            run_id, message, only_queued=False, reason=FailureReason.RUNNER_EXITED
        )
        for suffix in (".pid", ".log"):
            with contextlib.suppress(FileNotFoundError):
                (self.runs_dir / f"{run_id}{suffix}").unlink()
        return failed

    def _stderr_tail(self, run_id: uuid.UUID) -> str:
        try:
            with (self.runs_dir / f"{run_id}.log").open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 16384))
                lines = handle.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-STDERR_TAIL:])[-4000:]

    def stop(self, item: Launched) -> None:
        """TERM the runner (it stops its command and flushes); KILL both if still alive later."""
        now = time.monotonic()
        started = self._stopping.get(item.pid)
        if started is None:
            groups = _descendant_groups(item.pid) - {os.getpgrp()}
            self._stopping[item.pid] = (now, groups)
            log.info("run_id=%s: stopping the local runner (pid %s)", item.run_id, item.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(item.pid, signal.SIGTERM)
            return
        when, groups = started
        if now - when < KILL_AFTER:
            return
        log.warning("run_id=%s: the local runner ignored TERM; killing it", item.run_id)
        for group in {item.pid, *groups} - {os.getpgrp()}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)

    def sweep(self) -> int:
        """Stop runners of terminal runs, fail runs whose runner died; return how many acted on."""
        items = self.launched()
        if not items:
            return 0
        ids = [item.run_id for item in items]
        with self.app.app_context():
            try:
                statuses = dict(
                    db.session.execute(select(Run.id, Run.status).where(Run.id.in_(ids))).all()
                )
            finally:
                db.session.remove()
        acted = 0
        for item in items:
            status = statuses.get(item.run_id)
            finished = status is None or RunStatus(status).terminal
            if item.alive():
                if finished:
                    self.stop(item)
                    acted += 1
                continue
            self._stopping.pop(item.pid, None)
            if item.run_id in self.children:
                continue  # our own child: its watcher records the exit code
            with self.app.app_context():
                try:
                    if self._exited(item.run_id, "the local runner process ended") or finished:
                        acted += 1
                finally:
                    db.session.remove()
        return acted


def local_runner(app: Flask) -> LocalRunner:
    """The app's LocalRunner, created on first use.

    Its children are deliberately not stopped when this process exits: gunicorn recycles
    workers (max_requests), and a run in progress keeps reporting over HTTP to the workers
    that remain (its pid file lets every process of the host see it).
    """
    runner: LocalRunner | None = app.extensions.get(_EXTENSION)
    if runner is None:
        runner = LocalRunner(app)
        app.extensions[_EXTENSION] = runner
    return runner


def run_once(app: Flask) -> int:
    """The local-runner sweep (a background Sweep): see ``LocalRunner.sweep``."""
    if Path(app.instance_path, "local-runs").is_dir():
        return local_runner(app).sweep()
    return 0


@hooks.after_transition
def _stop_on_cancel(info: hooks.TransitionInfo) -> None:
    """A local run was cancelled in this process: stop its runner now if it runs on this host.

    Cancels that land on another host are seen by that host's sweep (and by the runner's next
    callback, answered 409).
    """
    if info.to_status != RunStatus.CANCELLED.value or info.dispatch_backend != "local":
        return
    runner = local_runner(current_app._get_current_object())  # type: ignore[attr-defined]
    for item in runner.launched():
        if item.run_id == info.run_id and item.alive():
            runner.stop(item)
