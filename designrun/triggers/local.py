"""The built-in local runner: runs ``designrun-runner`` as a subprocess of the service.

A local run goes through exactly the same HTTP callbacks as a remote runner (the job request is
the Daytona one, handed to the subprocess on stdin). At most LOCAL_RUNNER_CONCURRENCY runs execute
at once on this host; the rest stay ``queued`` with their trigger row due.

The bound is per host, not per gunicorn worker: only the process holding an exclusive ``flock``
on ``instance/local-runner.lock`` launches local runs (any worker may take it over when its holder
exits). The others leave local triggers alone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from designrun.models import FailureReason, Run
from designrun.triggers.jobs import job_body

log = logging.getLogger(__name__)

_EXTENSION = "designrun.local_runner"
DEFAULT_COMMAND = [sys.executable, "-m", "designrun.agents.demo"]


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
        "--",
        *agent,
    ]


class LocalRunner:
    """This process's launcher of local runs (see the module docstring)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.limit = int(app.config["LOCAL_RUNNER_CONCURRENCY"])
        self.lock_path = Path(app.instance_path) / "local-runner.lock"
        self._lock_fd: int | None = None
        self._guard = threading.Lock()
        self.children: dict[uuid.UUID, subprocess.Popen[bytes]] = {}
        self.reserved: set[uuid.UUID] = set()  # triggers holding a slot, not launched yet

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
        self._lock_fd = fd
        return True

    def reserve(self, trigger_id: uuid.UUID) -> bool:
        """Take a slot for a run about to be launched; False when none is free here.

        Reserved before the trigger is claimed, so two dispatcher passes running at once cannot
        both fill the last slot.
        """
        if not self.is_supervisor():
            return False
        with self._guard:
            self.children = {k: p for k, p in self.children.items() if p.poll() is None}
            if len(self.children) + len(self.reserved) >= self.limit:
                return False
            self.reserved.add(trigger_id)
            return True

    def release(self, trigger_id: uuid.UUID) -> None:
        """Give back the trigger's slot if it was not used (no-op once launched)."""
        with self._guard:
            self.reserved.discard(trigger_id)

    def launch(self, trigger_id: uuid.UUID, run: Run, origin: str) -> None:
        """Start the runner subprocess for ``run`` in a reserved slot (released either way).

        A watcher thread fails the run if the subprocess exits before reporting a final status.
        Raises OSError when the subprocess cannot be started.
        """
        config: Mapping[str, Any] = self.app.config
        if config.get("LOCAL_RUNNER_ORIGIN"):  # e.g. http://127.0.0.1:8000 behind a proxy
            config = {**config, "EXPO_PUBLIC_WORKER_ORIGIN": config["LOCAL_RUNNER_ORIGIN"]}
        body = job_body(config, run, origin)
        env = {k: v for k, v in os.environ.items() if k not in _SERVER_SECRETS}
        if body.get("requestId"):
            env["DESIGNRUN_REQUEST_ID"] = body["requestId"]
        try:
            process = subprocess.Popen(  # noqa: S603 - the operator's configured command
                runner_command(config),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError:
            self.release(trigger_id)
            raise
        with self._guard:
            self.reserved.discard(trigger_id)
            self.children[run.id] = process
        if process.stdin is not None:
            try:
                process.stdin.write(json.dumps(body).encode())
                process.stdin.close()
            except OSError:
                log.warning("run_id=%s: the local runner exited before reading its job", run.id)
        log.info("run_id=%s: local runner started (pid %s)", run.id, process.pid)
        threading.Thread(
            target=self._watch, args=(run.id, process), name=f"dr-local-{run.id}", daemon=True
        ).start()

    def _watch(self, run_id: uuid.UUID, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        with self._guard:
            self.children.pop(run_id, None)
        from designrun.services import runs
        from designrun.triggers import dispatcher

        with self.app.app_context():
            try:
                if runs.fail_run(
                    run_id,
                    f"the local runner exited with code {code} before reporting a final status",
                    only_queued=False,
                    reason=FailureReason.RUNNER_EXITED,
                ):
                    log.warning("run_id=%s: local runner died (code %s)", run_id, code)
            except Exception:
                log.exception("run_id=%s: could not record the local runner's exit", run_id)
            finally:
                from designrun.extensions import db

                db.session.remove()
        dispatcher.wake(self.app)  # a slot is free: start the next queued run


# The subprocess gets the job (with its run-scoped token) on stdin; never the server's secrets.
_SERVER_SECRETS = frozenset({"RUNNER_AUTH_SECRET", "SECRET_KEY", "DATABASE_URL", "DAYTONA_API_KEY"})


def local_runner(app: Flask) -> LocalRunner:
    """The app's LocalRunner, created on first use.

    Its children are deliberately not stopped when this process exits: gunicorn recycles
    workers (max_requests), and a run in progress keeps reporting over HTTP to the workers
    that remain.
    """
    runner: LocalRunner | None = app.extensions.get(_EXTENSION)
    if runner is None:
        runner = LocalRunner(app)
        app.extensions[_EXTENSION] = runner
    return runner
