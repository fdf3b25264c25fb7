"""Real server processes for the slow tests: ``GunicornServer`` runs ``gunicorn wsgi:app``.

The server listens on a free port of 127.0.0.1 only, writes its output to files (a full pipe
would block it) and is always stopped by ``stop()`` (a context manager does it), which kills
its own process group: the master and its workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def children(master: int) -> list[tuple[int, str]]:
    """The master's child processes: (pid, command line)."""
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    found = []
    for pid in map(int, out.split()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # exited meanwhile
        found.append((pid, cmdline))
    return found


def worker_pids(master: int) -> list[int]:
    """The master's gunicorn workers (not the SQLite event writer it also runs)."""
    return [pid for pid, cmdline in children(master) if EVENT_WRITER not in cmdline]


def event_writer_pids(master: int) -> list[int]:
    """The master's SQLite event writer (services/event_writer.py): one process, or none."""
    return [pid for pid, cmdline in children(master) if EVENT_WRITER in cmdline]


EVENT_WRITER = "designrun.services.event_writer"


class GunicornServer:
    """``gunicorn wsgi:app`` from the repository root, with gunicorn.conf.py and ``env``."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "gunicorn") -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.env = {**os.environ, **env, "BIND": f"{HOST}:{self.port}", "PYTHONUNBUFFERED": "1"}
        self.stdout_path = log_dir / f"{name}-{self.port}.out"
        self.stderr_path = log_dir / f"{name}-{self.port}.err"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> GunicornServer:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "wsgi:app"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: workers are stopped with it
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> GunicornServer:
        """Wait until the server answers; fail with its stderr if it exits or never answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited():
                raise AssertionError(f"gunicorn exited ({self.returncode}):\n{self.stderr()}")
            try:
                if requests.get(self.url + "/api/openapi.json", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gunicorn did not answer within {timeout}s:\n{self.stderr()}")

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if the master is still running after ``timeout``."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stop(self) -> None:
        """Kill the master and its workers (a crash, the harshest kind of restart).

        Nothing is in flight when the tests stop a server, and a graceful stop costs seconds of
        interpreter shut-down per process on a busy machine.
        """
        process = self.process
        if process is None or process.poll() is not None:
            return
        # Not reaped yet, so the group id is still ours: the master and its workers.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def __enter__(self) -> GunicornServer:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def server_environment(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment of a gunicorn server on the test database, with its own instance folder
    and object store under ``tmp_path``; ``extra`` adds or overrides variables."""
    import secrets

    instance = tmp_path / "instance"
    instance.mkdir()
    return {
        "DATABASE_URL": database_url,
        "DESIGNRUN_INSTANCE_PATH": str(instance),
        "STORAGE_LOCAL_DIR": str(tmp_path / "objects"),
        "RUNNER_AUTH_SECRET": secrets.token_urlsafe(32),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "WEB_CONCURRENCY": "2",
        **extra,
    }
