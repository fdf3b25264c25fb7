"""Ingestion and read benchmark of designrun against the storage ceiling (bench/README.md).

Starts designrun and bench/ceiling_app.py under the same gunicorn settings (the project's
gunicorn.conf.py and its worker class, or --worker-class), on SQLite and on PostgreSQL, drives
simulated runners over loopback with wrk (bench/wrk/*.lua), checks that every acknowledged
event is stored exactly once and in order, and prints one table with ratios and PASS/FAIL
against the targets (TARGETS below; reads: median latency with 10^6 stored events <= 1.5 x
with 10^3).

    .venv/bin/python bench/ingest.py [--duration 6] [--rounds 3] [--quick] [--skip-pg] [--profile]

Exit status: 0 when every target passes, 1 when one fails, 2 when the bench could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ceiling_app
from dataset import (
    Database,
    User,
    check_logs,
    create_runs,
    migrate,
    sign_up,
    write_runs_file,
)
from harness import (
    BENCH,
    ROOT,
    WrkResult,
    cpu_busy,
    create_pg_database,
    drop_pg_database,
    gunicorn,
    have_wrk,
    pg_dsn_for,
    run_wrk,
)
from reads import run_reads
from table import Bench, Row, print_table
from verify import verify

from designrun.auth import runner_tokens

RESULTS = BENCH / "results"
# The targets (issue 13): designrun's rate as a share of the ceiling's, measured in the same run.
TARGETS = {
    ("sqlite", "single"): 0.9,
    ("sqlite", "batch"): 1.0,
    ("postgresql", "single"): 0.8,
    ("postgresql", "batch"): 0.8,
}
P99_LIMIT_MS = 30.0  # single events on SQLite


# --- ingestion -----------------------------------------------------------------------------------


def _wrk_events(
    bench: Bench, url: str, runs_file: Path, batch: int, prefix: str, seconds: float
) -> WrkResult:
    n = bench.args.connections
    return run_wrk(
        "runner_events.lua",
        url,
        n,
        n,
        seconds,
        {"WRK_RUNS_FILE": str(runs_file), "WRK_BATCH": str(batch), "WRK_KEY_PREFIX": prefix},
    )


@dataclass
class Sample:
    """One wrk run against one server, with what its workers spent and what was stored."""

    wrk: WrkResult
    size: int  # events per request
    cpu_ms_per_event: float  # the server's worker CPU time per stored event
    load: float  # 1-minute load average when it ended
    stored: int
    lost: int  # acknowledged events not stored
    duplicated: int  # events stored twice (same idempotency key)
    peer_cpu_s: float  # CPU the other (idle) server's workers used meanwhile

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.wrk.rate * self.size


@dataclass
class Target:
    """A server under test: designrun or the ceiling app, with its database."""

    name: str
    server: Any
    db: Database
    ceiling: bool
    user: User | None = None
    results: dict[str, list[Sample]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    stored: int = 0

    @property
    def url(self) -> str:
        return str(self.server.url)

    def new_runs(self, bench: Bench, count: int) -> list[tuple[str, str]]:
        """Fresh runs and their bearer tokens ("-": the ceiling has no auth)."""
        if self.ceiling:
            return [(str(uuid.uuid4()), "-") for _ in range(count)]
        assert self.user is not None
        ids = create_runs(self.url, self.user, count)
        return [(str(i), runner_tokens.mint(bench.secret, i, 3600)[0]) for i in ids]


def measure(bench: Bench, target: Target, peer: Target, phase: str, rnd: int) -> None:
    """One wrk run of ``phase`` against ``target`` on fresh runs; check the stored logs."""
    size = bench.args.batch if phase == "batch" else 1
    runs = target.new_runs(bench, bench.args.connections)
    runs_file = write_runs_file(bench.workdir / f"runs-{target.name}-{phase}-{rnd}.txt", runs)
    cpu_before, peer_before = target.server.cpu_seconds(), peer.server.cpu_seconds()
    result = _wrk_events(
        bench,
        target.url,
        runs_file,
        0 if size == 1 else size,
        f"{phase[0]}{rnd}",
        bench.args.duration,
    )
    cpu = target.server.cpu_seconds() - cpu_before
    peer_cpu = peer.server.cpu_seconds() - peer_before
    check = check_logs(target.db, [run for run, _ in runs], target.ceiling)
    target.problems += check.problems
    target.stored += check.stored
    acked, sent = result.acked * size, (result.requests + bench.args.connections) * size
    sample = Sample(
        wrk=result,
        size=size,
        cpu_ms_per_event=cpu * 1000 / check.stored if check.stored else 0.0,
        load=os.getloadavg()[0],
        stored=check.stored,
        lost=max(0, acked - check.stored),
        duplicated=check.duplicated,
        peer_cpu_s=peer_cpu,
    )
    target.results.setdefault(phase, []).append(sample)
    if not acked <= check.stored <= sent:
        target.problems.append(f"{phase}: {check.stored} events stored, acked {acked}..{sent}")
    print(
        f"    {target.name} {phase}: {sample.rate:,.0f} ev/s, p50 {result.p50:.1f} ms,"
        f" p99 {result.p99:.1f} ms, {sample.cpu_ms_per_event:.3f} CPU-ms/event,"
        f" idle peer {peer_cpu:.2f} CPU-s, load {sample.load:.1f}",
        flush=True,
    )


def _ceiling_setup(bench: Bench, kind: str) -> tuple[Database, dict[str, str]]:
    """A fresh database for bench/ceiling_app.py, and its environment (mode, database)."""
    if kind == "sqlite":
        path = bench.workdir / "ceiling.db"
        ceiling_app.init_sqlite(str(path))
        db = Database("sqlite", f"sqlite:///{path}")
        # The ceiling runs under designrun's gunicorn.conf.py too; it has no use for the
        # event writer process that file starts for designrun on SQLite.
        env = {"CEILING_MODE": bench.args.ceiling_mode, "CEILING_DB": str(path)}
        return db, {**env, "DESIGNRUN_SQLITE_EVENT_WRITER": "0"}
    dsn = _pg_database(bench, f"ceiling_bench_{os.getpid()}")
    ceiling_app.init_pg(dsn)
    return Database("postgresql", dsn), {"CEILING_MODE": "pg_seq", "CEILING_PG_DSN": dsn}


def run_ingest(bench: Bench, kind: str, db: Database) -> tuple[Target, Target, Any]:
    """Ceiling and designrun served side by side; measurements alternate between them.

    Alternating (ceiling, designrun) per phase and round keeps slow drifts of a shared machine
    out of the ratios. Only the server being measured is busy; the other waits in accept().
    """
    ceiling_db, ceiling_env = _ceiling_setup(bench, kind)
    migrate(db, bench.env(db, f"designrun-{kind}"), bench.args.app_root)
    workers, workdir = bench.args.workers, bench.workdir
    with (
        gunicorn(
            f"ceiling-{kind}",
            "ceiling_app:app",
            {**bench.env(ceiling_db, f"ceiling-{kind}"), **ceiling_env},
            workdir,
            workers,
            chdir=BENCH,
            root=bench.args.app_root,
            worker_class=bench.args.worker_class,
            threads=bench.args.threads,
        ) as ceiling_server,
        gunicorn(
            f"designrun-{kind}",
            "wsgi:app",
            bench.env(db, f"designrun-{kind}"),
            workdir,
            workers,
            chdir=None,
            root=bench.args.app_root,
            worker_class=bench.args.worker_class,
            threads=bench.args.threads,
        ) as server,
    ):
        ceiling = Target("ceiling", ceiling_server, ceiling_db, ceiling=True)
        ours = Target(
            "designrun",
            server,
            db,
            ceiling=False,
            user=sign_up(server.url, f"ingest-{kind}@bench.example"),
        )
        for target in (ceiling, ours):  # warm-up: imports, connections, page cache
            runs_file = write_runs_file(workdir / "runs-warm.txt", target.new_runs(bench, 4))
            _wrk_events(bench, target.url, runs_file, 0, "w", 2)
        for rnd in range(bench.args.rounds):
            for phase in ("single", "batch"):
                measure(bench, ceiling, ours, phase, rnd)
                measure(bench, ours, ceiling, phase, rnd)
        print(f"  designrun-{kind}: verifying acked events through the API", flush=True)
        assert ours.user is not None
        verify_runs = [
            (uuid.UUID(run), token) for run, token in ours.new_runs(bench, bench.args.connections)
        ]
        checked = verify(server.url, ours.user, verify_runs, bench.args.verify_seconds)
        if bench.args.profile:
            _profile(bench, server, ours, f"designrun-{kind}")
    return ours, ceiling, checked


def _profile(bench: Bench, server: Any, ours: Target, name: str) -> None:
    """py-spy over every worker while wrk drives single events, then batches."""
    import sampling

    RESULTS.mkdir(exist_ok=True)
    seconds = bench.args.duration
    for phase, batch in (("single", 0), ("batch", bench.args.batch)):
        raw = RESULTS / f"profile-{name}-{phase}.txt"
        runs_file = write_runs_file(
            bench.workdir / "runs-profile.txt", ours.new_runs(bench, bench.args.connections)
        )
        spy = sampling.start(server.proc.pid, seconds, raw)
        try:
            time.sleep(1)  # py-spy attaches to each worker
            _wrk_events(bench, server.url, runs_file, batch, f"p{phase[0]}", seconds - 1)
        finally:
            _, err = spy.communicate(timeout=seconds + 60)
        if spy.returncode != 0 or not raw.exists():
            bench.profiles.append((f"{name} {phase}", f"  py-spy failed: {err.decode()[-500:]}"))
            continue
        bench.profiles.append(
            (f"{name} {phase} ({raw.relative_to(ROOT)})", sampling.summarise(raw))
        )


def _mid(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def _cell(samples: list[Sample]) -> str:
    return (
        f"{_mid([s.rate for s in samples]):,.0f} ev/s"
        f" p50 {_mid([s.wrk.p50 for s in samples]):.1f}"
        f" p99 {_mid([s.wrk.p99 for s in samples]):.1f} ms"
        f" {_mid([s.cpu_ms_per_event for s in samples]):.3f} cpu-ms/ev"
    )


def _rate_row(bench: Bench, kind: str, phase: str, ours: Target, ceiling: Target) -> Row:
    """Designrun against the ceiling: the median of the per-round ratios (paired runs)."""
    mine, theirs = ours.results[phase], ceiling.results[phase]
    ratio = _mid([a.rate / b.rate if b.rate else 0.0 for a, b in zip(mine, theirs, strict=True)])
    p99 = _mid([s.wrk.p99 for s in mine])
    lost, duplicated = sum(s.lost for s in mine), sum(s.duplicated for s in mine)
    wanted = TARGETS[(kind, phase)]
    ok = ratio >= wanted and not lost and not duplicated
    ok = ok and not any(s.wrk.non_2xx or s.wrk.errors for s in mine)
    target = f">= {wanted}x"
    if kind == "sqlite" and phase == "single":
        ok = ok and p99 < P99_LIMIT_MS
        target += f", p99 < {P99_LIMIT_MS:.0f} ms"
    size = mine[0].size
    what = "single events" if size == 1 else f"batches of {size}"
    return Row(
        f"{kind}: {what}, {bench.args.connections} runners",
        _cell(mine),
        _cell(theirs),
        f"{ratio:.2f}x",
        target,
        "PASS" if ok else "FAIL",
        {
            "lost": lost,
            "duplicated": duplicated,
            "designrun": [asdict(r) for r in mine],
            "ceiling": [asdict(r) for r in theirs],
        },
        lost_duplicated=f"{lost}/{duplicated}",
    )


def ingest_rows(bench: Bench, kind: str, ours: Target, ceiling: Target, checked: Any) -> None:
    """Table rows for one backend's ingestion and verification.

    Both backends are graded against the ceiling app measured in the same run (``pg_seq`` on
    PostgreSQL); TARGETS has the bars.
    """
    bench.rows.append(_rate_row(bench, kind, "single", ours, ceiling))
    bench.rows.append(_rate_row(bench, kind, "batch", ours, ceiling))
    failures = sum(s.wrk.non_2xx + s.wrk.errors for runs in ours.results.values() for s in runs)
    problems = ours.problems + checked.problems
    if failures:
        problems.append(f"{failures} wrk requests failed (non-2xx or socket errors)")
    bench.rows.append(
        Row(
            f"{kind}: exactly once, in order",
            f"wrk {ours.stored:,} stored; API {checked.acked_events:,} acked / "
            f"{checked.stored_events:,} stored",
            f"ceiling {ceiling.stored:,} stored, {len(ceiling.problems)} problems",
            "",
            "every ack stored once, in order",
            "PASS" if not problems and checked.ok else "FAIL",
            {
                "problems": problems[:20],
                "verification": asdict(checked),
                "ceiling_problems": ceiling.problems[:20],
            },
            lost_duplicated=f"{max(0, checked.acked_events - checked.stored_events)}/"
            f"{max(0, checked.stored_events - checked.acked_events)}",
        )
    )


def _pg_database(bench: Bench, name: str) -> str:
    create_pg_database(bench.args.pg_dsn, name)
    bench.args.pg_created.append(name)
    return pg_dsn_for(bench.args.pg_dsn, name)


def run_backend(bench: Bench, kind: str) -> None:
    print(f"{kind}:", flush=True)
    if kind == "sqlite":
        db = Database("sqlite", f"sqlite:///{bench.workdir / 'designrun.db'}")
        small_db = Database("sqlite", f"sqlite:///{bench.workdir / 'reads-small.db'}")
        large_db = Database("sqlite", f"sqlite:///{bench.workdir / 'reads-large.db'}")
    else:
        db = Database("postgresql", _pg_database(bench, f"designrun_bench_{os.getpid()}"))
        pid = os.getpid()
        small_db = Database("postgresql", _pg_database(bench, f"designrun_reads_small_{pid}"))
        large_db = Database("postgresql", _pg_database(bench, f"designrun_reads_large_{pid}"))
    if not bench.args.skip_ingest:
        ours, ceiling, checked = run_ingest(bench, kind, db)
        ingest_rows(bench, kind, ours, ceiling, checked)
    if not bench.args.skip_reads:
        run_reads(bench, kind, small_db, large_db)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6, help="seconds per ingestion run")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4 s runs and 10^5 events for the large read set (a smoke test)",
    )
    parser.add_argument("--skip-pg", action="store_true", help="SQLite only")
    parser.add_argument("--skip-reads", action="store_true", help="no read benchmark")
    parser.add_argument("--skip-ingest", action="store_true", help="reads only")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the designrun workers after the measurements"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating measurements per phase; the median is reported",
    )
    parser.add_argument("--connections", type=int, default=16, help="concurrent runners")
    parser.add_argument("--workers", type=int, default=5, help="gunicorn sync workers, both apps")
    parser.add_argument("--batch", type=int, default=100, help="events per batch request")
    parser.add_argument("--large-events", type=int, default=1_000_000)
    parser.add_argument("--read-connections", type=int, default=2, help="concurrent readers")
    parser.add_argument("--verify-seconds", type=float, default=5)
    parser.add_argument(
        "--pg-dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a database to create and drop the scratch databases from",
    )
    parser.add_argument(
        "--ceiling-mode",
        default="sqlite_seq",
        choices=("sqlite_seq", "sqlite_seq_flock"),
        help="how the SQLite ceiling's writers wait for the lock (bench/ceiling_app.py)",
    )
    parser.add_argument(
        "--worker-class",
        default=None,
        help="gunicorn worker class for both apps, e.g. sync or gthread "
        "(default: gunicorn.conf.py's)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per gthread worker, both apps"
    )
    parser.add_argument(
        "--app-root",
        type=Path,
        default=ROOT,
        help="serve designrun (wsgi.py, gunicorn.conf.py) from this tree: A/B a patch",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and logs")
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 4)
        args.large_events = min(args.large_events, 100_000)
        args.verify_seconds = min(args.verify_seconds, 3)
    args.read_seconds = max(3.0, args.duration / 2)  # per run; max(2, --rounds) runs each
    args.pg_created = []
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not have_wrk():
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    busy = cpu_busy(2.0)
    if busy > 0.25:
        print(
            f"warning: the CPU is {busy:.0%} busy before the bench starts (other jobs): "
            "every number will be low and p99 high; compare ratios only",
            flush=True,
        )
    bench = Bench(args, Path(tempfile.mkdtemp(prefix="designrun-bench-")))
    bench.busy_before = busy
    started = time.monotonic()
    try:
        for kind in ("sqlite", *(() if args.skip_pg else ("postgresql",))):
            run_backend(bench, kind)
    finally:
        for name in args.pg_created:
            drop_pg_database(args.pg_dsn, name)
        if args.keep:
            print(f"scratch folder kept: {bench.workdir}")
        else:
            shutil.rmtree(bench.workdir, ignore_errors=True)
    print(
        f"\ndesignrun ingestion and reads vs the storage ceiling "
        f"({args.workers} {args.worker_class or 'gunicorn.conf.py'} workers each"
        f"{f' x {args.threads} threads' if args.threads else ''}, ceiling {args.ceiling_mode},"
        f" {os.cpu_count()} cores, "
        f"{args.duration:.0f} s per run, {time.monotonic() - started:.0f} s in all, "
        f"CPU {bench.busy_before:.0%} busy before start)\n"
    )
    print_table(bench.rows)
    for title, text in bench.profiles:
        print(f"\nprofile: {title}\n{text}")
    failed = [r for r in bench.rows if r.verdict == "FAIL"]
    for row in failed:
        for problem in row.data.get("problems", [])[:5]:
            print(f"  {row.check}: {problem}")
    if not args.no_json:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "cpu_busy_before": bench.busy_before,
                    "rows": [asdict(r) for r in bench.rows],
                },
                indent=2,
            )
        )
        print(f"\nresults: {out.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
