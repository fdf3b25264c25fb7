"""Live-tail benchmark (issue 8 § Performance): stream latency, and ingestion beside open streams.

1. Latency. K streams are open (K = 1, 50, 200), each on its own run; one runner posts single
   events to those runs in turn. For each event: the time from its POST being answered to the
   event arriving on the stream that watches the run. Median and p99, SQLite and PostgreSQL.
   Targets: p99 < 1 s (SQLite), < 250 ms (PostgreSQL).
2. Ingestion beside streams. wrk posts single events (16 runners, bench/wrk/runner_events.lua)
   for ``--soak`` seconds with no stream open, then with 500 streams open on other runs (each
   ticking with pings). Target: rate with streams ≥ 0.8 x rate without. The server's memory
   (RSS of the master and its workers) is reported with the streams open.

The server runs the project's gunicorn.conf.py unchanged (the default configuration: gthread,
2 x cores + 1 workers, STREAM_MAX_PER_PROCESS) with RUNNER_BACKEND=none. The streams are held
by one asyncio client (plain sockets, HTTP/1.1 chunked). Everything stays on 127.0.0.1.

    .venv/bin/python bench/streams.py                 # SQLite and PostgreSQL, 60 s soak
    .venv/bin/python bench/streams.py --soak 20 --samples 100 --skip-pg
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from designrun.auth import runner_tokens  # noqa: E402
from designrun.config import ENVIRONMENT  # noqa: E402

SECRET = "bench-" + "s" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def base_env(**extra: str) -> dict[str, str]:
    drop = {*ENVIRONMENT, "WEB_CONCURRENCY", "BIND", "PORT", "GUNICORN_ACCESSLOG"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


@contextmanager
def database(kind: str, scratch: Path, pg_dsn: str) -> Any:
    """A fresh, migrated database: its URL."""
    if kind == "sqlite":
        url = f"sqlite:///{scratch / 'bench.db'}"
        name = None
    else:
        import psycopg

        name = f"designrun_streams_bench_{os.getpid()}"
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        url = pg_dsn.rsplit("/", 1)[0] + "/" + name
    env = base_env(DATABASE_URL=url, DESIGNRUN_INSTANCE_PATH=str(scratch / "instance"))
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "designrun", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        yield url
    finally:
        if name is not None:
            import psycopg

            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def server(url: str, scratch: Path) -> Any:
    port = free_port()
    log = scratch / f"gunicorn-{port}.log"
    env = base_env(
        DATABASE_URL=url,
        DESIGNRUN_INSTANCE_PATH=str(scratch / "instance"),
        RUNNER_AUTH_SECRET=SECRET,
        RUNNER_BACKEND="none",
        BIND=f"127.0.0.1:{port}",
        GUNICORN_ACCESSLOG="",
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
            try:
                requests.get(base + "/api/openapi.json", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        time.sleep(1.0)  # the other workers finish booting
        yield base, proc
    finally:
        stop_group(proc)


def rss_mib(proc: subprocess.Popen[Any]) -> float:
    """RSS of the gunicorn master and its workers, MiB."""
    pids = [proc.pid]
    out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    pids += [int(p) for p in out.stdout.split()]
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def sign_up(base: str) -> str:
    r = requests.post(
        base + "/api/auth/sign-up/email",
        json={"email": f"{secrets.token_hex(6)}@bench.example", "password": "p" * 12},
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["token"])


def create_runs(base: str, token: str, count: int) -> list[str]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    ids = []
    for _ in range(count):
        r = session.post(base + "/api/design/runs", json={"prompt": "bench"}, timeout=30)
        r.raise_for_status()
        ids.append(str(r.json()["run"]["id"]))
    return ids


# --- the stream client (asyncio, raw HTTP/1.1) -------------------------------------------------


class Streams:
    """Hold SSE connections; record when each event (by its message) arrives."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.arrivals: dict[str, float] = {}
        self.refused = 0
        self.open = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def _one(self, run_id: str, ready: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            (
                f"GET /api/design/runs/{run_id}/events/stream HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\nAuthorization: Bearer {self.token}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        if b" 200 " not in status:
            self.refused += 1
            ready.set()
            writer.close()
            return
        self.open += 1
        ready.set()
        buffer = b""
        try:
            while True:
                size_line = await reader.readline()
                if not size_line:
                    return
                size = int(size_line.strip() or b"0", 16)
                if size == 0:
                    return
                buffer += await reader.readexactly(size)
                await reader.readexactly(2)
                now = time.monotonic()
                while b"\n\n" in buffer:
                    message, buffer = buffer.split(b"\n\n", 1)
                    if b"event: event" in message:
                        data = message.split(b"data: ", 1)[1]
                        self.arrivals[json.loads(data)["message"]] = now
        finally:
            self.open -= 1
            writer.close()

    async def start(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            ready = asyncio.Event()
            self.tasks.append(asyncio.create_task(self._one(run_id, ready)))
            await ready.wait()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure_latency(base: str, token: str, k: int, samples: int) -> dict[str, Any]:
    port = int(base.rsplit(":", 1)[1])
    run_ids = create_runs(base, token, k)
    streams = Streams(port, token)
    await streams.start(run_ids)
    await asyncio.sleep(1.0)
    answered: dict[str, float] = {}

    def writer() -> None:
        session = requests.Session()
        for n in range(samples):
            run_id = run_ids[n % k]
            bearer, _ = runner_tokens.mint(SECRET, uuid.UUID(run_id), 3600)
            label = f"lat-{k}-{n}"
            r = session.post(
                f"{base}/api/runner/runs/{run_id}/events",
                json={"eventType": "bench", "message": label},
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=30,
            )
            answered[label] = time.monotonic()
            r.raise_for_status()
            time.sleep(0.05)

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.05)
    deadline = time.monotonic() + 10
    while len(streams.arrivals) < samples and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await streams.stop()
    latencies = [
        max(0.0, streams.arrivals[label] - at) * 1000
        for label, at in answered.items()
        if label in streams.arrivals
    ]
    lost = samples - len(latencies)
    return {
        "streams": k,
        "refused": streams.refused,
        "samples": len(latencies),
        "lost": lost,
        "median_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": percentile(latencies, 99) if latencies else None,
    }


def wrk_rate(base: str, run_ids: list[str], seconds: int, scratch: Path, tag: str) -> float:
    runs_file = scratch / f"runs-{tag}.txt"
    runs_file.write_text(
        "".join(f"{r} {runner_tokens.mint(SECRET, uuid.UUID(r), 7200)[0]}\n" for r in run_ids)
    )
    connections = len(run_ids)
    out = subprocess.run(
        [
            "wrk",
            f"-t{connections}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "wrk" / "runner_events.lua"),
            base,
        ],
        env={
            **os.environ,
            "WRK_RUNS_FILE": str(runs_file),
            "WRK_BATCH": "0",
            "WRK_KEY_PREFIX": tag,
        },
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            raw = json.loads(line.removeprefix("WRK_JSON "))
            return float(raw["requests"]) / (raw["duration_us"] / 1e6)
    raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")


async def soak(base: str, proc: Any, token: str, seconds: int, scratch: Path) -> dict[str, Any]:
    writers = create_runs(base, token, 16)
    idle_mib = rss_mib(proc)
    without = await asyncio.to_thread(wrk_rate, base, writers, seconds, scratch, "plain")
    watched = create_runs(base, token, 500)
    streams = Streams(int(base.rsplit(":", 1)[1]), token)
    await streams.start(watched)
    await asyncio.sleep(2.0)
    opened = streams.open
    with_streams = await asyncio.to_thread(wrk_rate, base, writers, seconds, scratch, "streams")
    held_mib = rss_mib(proc)
    still_open = streams.open
    await streams.stop()
    return {
        "rate_no_streams": without,
        "rate_500_streams": with_streams,
        "ratio": with_streams / without if without else None,
        "streams_open": opened,
        "streams_open_at_end": still_open,
        "streams_refused": streams.refused,
        "rss_mib_idle": idle_mib,
        "rss_mib_with_streams": held_mib,
    }


def run_backend(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix=f"streams-bench-{kind}-"))
    try:
        with database(kind, scratch, args.pg_dsn) as url, server(url, scratch) as (base, proc):
            token = sign_up(base)
            result: dict[str, Any] = {"backend": kind, "latency": []}
            for k in args.streams:
                row = asyncio.run(measure_latency(base, token, k, args.samples))
                print(f"[{kind}] latency with {k} streams: {row}", flush=True)
                result["latency"].append(row)
            if not args.skip_soak:
                result["soak"] = asyncio.run(soak(base, proc, token, args.soak, scratch))
                print(f"[{kind}] soak: {result['soak']}", flush=True)
            return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--samples", type=int, default=200, help="events per latency run")
    parser.add_argument("--soak", type=int, default=60, help="seconds per ingestion run")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None and not args.skip_soak:
        print("bench/streams.py: needs wrk (apt-get install wrk) or --skip-soak", file=sys.stderr)
        return 2
    kinds = [
        k for k, skip in (("sqlite", args.skip_sqlite), ("postgresql", args.skip_pg)) if not skip
    ]
    results = [run_backend(kind, args) for kind in kinds]
    targets = {"sqlite": 1000.0, "postgresql": 250.0}
    ok = True
    print("\nbackend     streams  median ms  p99 ms  lost  target p99")
    for result in results:
        for row in result["latency"]:
            passed = row["p99_ms"] is not None and row["p99_ms"] < targets[result["backend"]]
            passed = passed and row["lost"] == 0 and row["refused"] == 0
            ok = ok and passed
            print(
                f"{result['backend']:<11} {row['streams']:>7}  {row['median_ms']:>9.1f}"
                f"  {row['p99_ms']:>6.1f}  {row['lost']:>4}  < {targets[result['backend']]:.0f}"
                f"  {'PASS' if passed else 'FAIL'}"
            )
        soak_row = result.get("soak")
        if soak_row:
            passed = (soak_row["ratio"] or 0) >= 0.8 and soak_row["streams_open"] == 500
            ok = ok and passed
            print(
                f"{result['backend']:<11} ingestion {soak_row['rate_no_streams']:.0f}/s alone, "
                f"{soak_row['rate_500_streams']:.0f}/s beside {soak_row['streams_open']} streams "
                f"(x{soak_row['ratio']:.2f}, target >= 0.8) {'PASS' if passed else 'FAIL'}; "
                f"server RSS {soak_row['rss_mib_idle']:.0f} MiB idle, "
                f"{soak_row['rss_mib_with_streams']:.0f} MiB with the streams"
            )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"streams-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(results, indent=2)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
