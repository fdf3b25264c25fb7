"""Process plumbing for bench/ingest.py: gunicorn servers, wrk runs, scratch PostgreSQL databases.

Every process is started in its own session (process group) and stopped by signalling that
group, so a worker that outlives its master cannot keep a port or a database busy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from designrun.config import ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent

# Every setting API.md lists, plus the test suite's: the bench sets what it needs, nothing leaks
# in from the caller's shell (a DAYTONA_API_URL would send jobs somewhere).
DESIGNRUN_VARS = (
    *ENVIRONMENT,
    "TEST_DATABASE_URL",
    "WEB_CONCURRENCY",
    "BIND",
    "PORT",
    "GUNICORN_ACCESSLOG",
    "CEILING_MODE",
    "CEILING_DB",
    "CEILING_PG_DSN",
)


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without designrun/gunicorn settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in DESIGNRUN_VARS}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def cpu_busy(seconds: float = 1.0) -> float:
    """The share of CPU time in use (by anything) over ``seconds``, from /proc/stat."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return idle, sum(fields)

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    spent = total1 - total0
    return 1 - (idle1 - idle0) / spent if spent else 0.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_group(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM the process group of ``proc`` (its own session), SIGKILL it after ``grace``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


@dataclass
class Server:
    """A running gunicorn: its base URL, master process and log file."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def worker_pids(self) -> list[int]:
        """The pids of the master's children: its workers, and designrun's SQLite event writer
        (services/event_writer.py), whose CPU is part of what the service spends."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in out.stdout.split()]

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the workers, live and exited (from /proc).

        A worker replaced meanwhile (gunicorn's max_requests) takes its CPU time with it; the
        master's counts of its reaped children keep it, so that a difference of two readings
        never goes negative.
        """
        total = 0
        for pid in self.worker_pids():
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a worker that just exited: counted below once reaped
            total += int(fields[11]) + int(fields[12])
        try:
            with open(f"/proc/{self.proc.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[13]) + int(fields[14])  # cutime + cstime: reaped workers
        except OSError:
            pass
        return total / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def gunicorn(
    name: str,
    app: str,
    env: Mapping[str, str],
    workdir: Path,
    workers: int,
    chdir: Path | None,
    root: Path = ROOT,
    worker_class: str | None = None,
    threads: int | None = None,
) -> Iterator[Server]:
    """Serve ``app`` from ``root`` with its gunicorn.conf.py and ``workers`` workers.

    The worker class (and threads) are gunicorn.conf.py's unless ``worker_class`` overrides
    them. Access logs go to /dev/null (the same for every server: the bench compares request
    work, not logging). The control socket is off, so parallel gunicorns never fight over it.
    """
    port = free_port()
    log_path = workdir / f"{name}.log"
    cmd = [
        str(VENV_BIN / "gunicorn"),
        "-c",
        str(root / "gunicorn.conf.py"),
        "--no-control-socket",
    ]
    if worker_class is not None:
        cmd += ["--worker-class", worker_class]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if chdir is not None:
        cmd += ["--chdir", str(chdir)]
    cmd.append(app)
    server_env = dict(env)
    server_env.update(
        BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY=str(workers), GUNICORN_ACCESSLOG="/dev/null"
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, f"http://127.0.0.1:{port}", proc, log_path)
    try:
        _wait_ready(server, workers)
        yield server
    finally:
        stop_group(proc)


def _wait_ready(server: Server, workers: int, timeout: float = 60.0) -> None:
    """Wait until every worker has booted and the server answers HTTP."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start-up:\n{server.log_tail()}")
        booted = server.log_path.read_text(errors="replace").count("Booting worker")
        if booted >= workers:
            try:
                requests.get(server.url + "/api/bench-ready-probe", timeout=5)
                time.sleep(0.5)  # the other workers finish importing the app
                return
            except requests.ConnectionError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s:\n{server.log_tail()}")


@dataclass
class WrkResult:
    """What wrk's done() reported, latencies in milliseconds."""

    requests: int
    seconds: float
    errors: int
    non_2xx: int
    p50: float
    p90: float
    p99: float
    p999: float
    max: float

    @property
    def rate(self) -> float:
        """Completed requests per second (a non-2xx answer counts as completed)."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def acked(self) -> int:
        """Requests answered 2xx."""
        return self.requests - self.non_2xx


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    script: str, url: str, connections: int, threads: int, seconds: float, env: Mapping[str, str]
) -> WrkResult:
    """Run wrk with ``bench/wrk/<script>`` for ``seconds``; parse its WRK_JSON line."""
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "wrk" / script),
        url,
    ]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    finally:
        stop_group(proc, grace=2)
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            raw = json.loads(line.removeprefix("WRK_JSON "))
            errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
            return WrkResult(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                errors=errors,
                non_2xx=raw["status"],
                p50=raw["p50"] / 1000,
                p90=raw["p90"] / 1000,
                p99=raw["p99"] / 1000,
                p999=raw["p999"] / 1000,
                max=raw["max"] / 1000,
            )
    raise RuntimeError(f"wrk printed no result (exit {proc.returncode}):\n{out}\n{err}")


# --- PostgreSQL scratch databases ----------------------------------------------------------------


def pg_admin(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def create_pg_database(admin_dsn: str, name: str) -> None:
    """(Re)create an empty database ``name`` (ours: it carries the bench's pid)."""
    with pg_admin(admin_dsn) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_pg_database(admin_dsn: str, name: str) -> None:
    with pg_admin(admin_dsn) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_dsn_for(admin_dsn: str, name: str) -> str:
    """``admin_dsn`` with its database replaced by ``name``."""
    base = admin_dsn.rsplit("/", 1)[0] if admin_dsn.count("/") > 2 else admin_dsn
    return f"{base}/{name}"
