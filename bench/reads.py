"""The read half of ``ingest.py``: list-runs and events-page latency with 10^3 versus 10^6
stored events, two databases served side by side (bench/README.md § What it does, 4)."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import asdict

import requests
from dataset import (
    Database,
    ReadSet,
    User,
    count_events,
    load_large,
    load_small,
    migrate,
    sign_up,
)
from harness import WrkResult, gunicorn, run_wrk
from table import Bench, Row

READ_RATIO = 1.5  # the large set's median latency over the small one's, at most


def _collect_cursors(url: str, user: User, wanted: int) -> list[str | None]:
    """Cursors spread over the account's whole run list (walking it 100 runs a page)."""
    cursors: list[str | None] = [None]
    cursor: str | None = None
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {user.token}"
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            resp = http.get(f"{url}/api/design/runs", params=params, timeout=60)
            resp.raise_for_status()
            cursor = resp.json()["nextCursor"]
            if cursor is None:
                break
            cursors.append(cursor)
    step = max(1, len(cursors) // wanted)
    return cursors[::step]


def _read_paths(bench: Bench, url: str, read_set: ReadSet) -> dict[str, list[str]]:
    runs = []
    for i, cursor in enumerate(_collect_cursors(url, read_set.user, 50)):
        path = "/api/design/runs?limit=20" + (f"&cursor={cursor}" if cursor else "")
        runs.append(path + ("&status=completed" if i % 2 else ""))
    top = max(0, read_set.target_events - 100)
    rng = uuid.uuid4().int
    events = [
        f"/api/design/runs/{read_set.target_run}/events?limit=100&after={(rng >> i) % (top + 1)}"
        for i in range(500)
    ]
    return {"list-runs": runs, "events-page": events}


def _read_env(bench: Bench, url: str, read_set: ReadSet, label: str) -> dict[str, dict[str, str]]:
    """Per endpoint, the wrk environment of a reads.lua run (its paths checked once first)."""
    envs = {}
    for endpoint, paths in _read_paths(bench, url, read_set).items():
        resp = requests.get(
            url + paths[-1], headers={"Authorization": f"Bearer {read_set.user.token}"}, timeout=30
        )
        if resp.status_code != 200:
            raise RuntimeError(f"{endpoint} {paths[-1]}: {resp.status_code} {resp.text[:300]}")
        paths_file = bench.workdir / f"paths-{label}-{endpoint}.txt"
        paths_file.write_text("\n".join(paths) + "\n")
        envs[endpoint] = {"WRK_PATHS_FILE": str(paths_file), "WRK_TOKEN": read_set.user.token}
    return envs


def _median(results: list[WrkResult]) -> WrkResult:
    return sorted(results, key=lambda r: r.p50)[(len(results) - 1) // 2]


def run_reads(bench: Bench, kind: str, small_db: Database, large_db: Database) -> None:
    """List-runs and events-page latency with 10^3 versus ``--large-events`` stored events.

    Two databases served side by side, the large one being the small one plus the bulk load;
    measurements alternate between them (``--rounds``), so machine drift cancels out.
    """
    servers = {}
    sets = {}
    with contextlib.ExitStack() as stack:
        for label, db in (("small", small_db), ("large", large_db)):
            name = f"reads-{label}-{kind}"
            migrate(db, bench.env(db, name), bench.args.app_root)
            servers[label] = stack.enter_context(
                gunicorn(
                    name,
                    "wsgi:app",
                    bench.env(db, name),
                    bench.workdir,
                    bench.args.workers,
                    chdir=None,
                    root=bench.args.app_root,
                )
            )
            user = sign_up(servers[label].url, f"reads-{kind}@bench.example")
            sets[label] = load_small(db, user, runs=100, events=1000)
        print(f"  reads-{kind}: loading {bench.args.large_events:,} events", flush=True)
        seconds = load_large(large_db, sets["large"], bench.args.large_events, target_share=0.2)
        stored = count_events(large_db)
        print(f"  reads-{kind}: {stored:,} events loaded in {seconds:.0f} s", flush=True)
        envs = {
            label: _read_env(bench, servers[label].url, sets[label], label) for label in servers
        }
        n = bench.args.read_connections
        results: dict[tuple[str, str], list[WrkResult]] = {}
        for label in servers:  # warm-up
            for env in envs[label].values():
                run_wrk("reads.lua", servers[label].url, n, n, 1, env)
        for _ in range(max(2, bench.args.rounds)):
            for endpoint in ("list-runs", "events-page"):
                for label in servers:
                    result = run_wrk(
                        "reads.lua",
                        servers[label].url,
                        n,
                        n,
                        bench.args.read_seconds,
                        envs[label][endpoint],
                    )
                    results.setdefault((label, endpoint), []).append(result)
    for endpoint in ("list-runs", "events-page"):
        a = _median(results[("small", endpoint)])
        b = _median(results[("large", endpoint)])
        ratio = b.p50 / a.p50 if a.p50 else 0.0
        clean = not any(
            r.non_2xx or r.errors
            for key, runs in results.items()
            if key[1] == endpoint
            for r in runs
        )
        bench.rows.append(
            Row(
                f"{kind}: {endpoint} p50 (p99), 1e3 vs {stored:.0e} events",
                f"{b.p50:.1f} ({b.p99:.1f}) ms, {b.rate:,.0f} req/s",
                f"{a.p50:.1f} ({a.p99:.1f}) ms, {a.rate:,.0f} req/s",
                f"{ratio:.2f}x",
                f"<= {READ_RATIO}x",
                "PASS" if ratio <= READ_RATIO and clean else "FAIL",
                {
                    "small": [asdict(r) for r in results[("small", endpoint)]],
                    "large": [asdict(r) for r in results[("large", endpoint)]],
                    "stored_events": stored,
                    "target_run_events": sets["large"].target_events,
                    "account_runs": sets["large"].account_runs,
                },
            )
        )


# --- driver --------------------------------------------------------------------------------------
