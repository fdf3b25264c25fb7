"""Event ingestion under gthread workers, whose concurrent requests are committed together.

- Sixteen runners post single events and batches through two gthread workers while a process
  is SIGKILLed again and again, in the middle of whatever group it is committing: on SQLite
  in turn a worker and the event writer (services/event_writer.py: one process commits every
  worker's requests; the workers commit their own, ``_GroupCommit``, while it is restarted),
  on PostgreSQL a worker. Each runner resends a request until it is acknowledged, with the same
  idempotency keys, as the runner client does. Afterwards every acknowledged event is stored
  exactly once, with the id it was acknowledged with, and each run's sequence follows the
  order its runner sent.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from collections import defaultdict

import pytest
import requests
from sqlalchemy import select

from designrun.extensions import db
from designrun.models import RunEvent
from tests.factories import make_run, make_user
from tests.servers import GunicornServer, event_writer_pids, worker_pids
from tests.test_gunicorn import runner_bearer, server_env, server_env_dir  # noqa: F401

pytestmark = pytest.mark.slow

RUNNERS = 16
REQUESTS = 12  # per runner at least: runners go on until every kill is done
KILLS = 6


def _body(runner: int, number: int) -> tuple[list[str], dict]:
    """Request ``number`` of a runner: odd ones are batches of 5, even ones single events."""
    size = 5 if number % 2 else 1
    keys = [f"r{runner}-n{number}-e{i}" for i in range(size)]
    events = [{"eventType": "log", "message": key, "idempotencyKey": key} for key in keys]
    return keys, (events[0] if size == 1 else {"events": events})


def test_killing_workers_mid_group_commit_loses_and_duplicates_nothing(
    app,
    database_url,
    server_env,  # noqa: F811
):
    user = make_user(app)
    runs = [make_run(app, user, status="running").id for _ in range(RUNNERS)]
    env = {
        **server_env,
        "DATABASE_URL": database_url,
        "WEB_CONCURRENCY": "2",
        # Command-line settings over gunicorn.conf.py's, whatever its default worker class.
        "GUNICORN_CMD_ARGS": "--worker-class gthread --threads 8",
    }
    acked: dict[int, list[tuple[str, str]]] = defaultdict(list)  # runner -> (key, id) in order
    problems: list[str] = []
    interrupted = [0]  # requests that got no answer (their worker was killed under them)
    killed = threading.Event()
    sent: dict[int, list[str]] = defaultdict(list)  # runner -> keys of acknowledged requests

    def runner(number: int, base: str) -> None:
        run_id = runs[number]
        url = f"{base}/api/runner/runs/{run_id}/events"
        headers = runner_bearer(env["RUNNER_AUTH_SECRET"], run_id)
        try:
            for request in itertools.count():
                if request >= REQUESTS and killed.is_set():
                    return
                keys, body = _body(number, request)
                deadline = time.monotonic() + 90
                while True:
                    try:
                        r = requests.post(url, json=body, headers=headers, timeout=30)
                    except requests.RequestException:
                        r = None
                    if r is not None and r.status_code == 200:
                        break
                    if r is not None and r.status_code not in {502, 503}:
                        problems.append(f"{r.status_code} {r.text[:200]}")
                        return
                    interrupted[0] += 1
                    if time.monotonic() > deadline:
                        problems.append(f"runner {number}: no answer for {keys}")
                        return
                    time.sleep(0.05)
                answer = r.json()
                ids = answer["eventIds"] if "eventIds" in answer else [answer["eventId"]]
                acked[number] += list(zip(keys, ids, strict=True))
                sent[number] += keys
        except Exception as exc:  # a dead thread must fail the test, not shrink it
            problems.append(f"runner {number}: {exc!r}")

    with GunicornServer(env, server_env_dir(server_env)) as server:
        assert server.process is not None
        threads = [threading.Thread(target=runner, args=(n, server.url)) for n in range(RUNNERS)]
        for thread in threads:
            thread.start()
        kills = 0
        master = server.process.pid
        sqlite = database_url.startswith("sqlite")
        while kills < KILLS and any(t.is_alive() for t in threads):
            time.sleep(0.4)
            workers, writers = worker_pids(master), event_writer_pids(master)
            if len(workers) < 2 or (sqlite and not writers):
                continue  # not all booted (again) yet
            # Both workers are busy, and so is the writer on SQLite: kill whichever's turn it is.
            victims = [*workers, *writers] if sqlite else workers
            os.kill(victims[kills % len(victims)], signal.SIGKILL)
            kills += 1
        killed.set()
        for thread in threads:
            thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []
    assert kills == KILLS
    assert interrupted[0] > 0, "no request was in flight when a worker was killed"

    with app.app_context():
        rows = db.session.execute(
            select(RunEvent.run_id, RunEvent.idempotency_key, RunEvent.id, RunEvent.sequence)
            .where(RunEvent.run_id.in_(runs))
            .order_by(RunEvent.run_id, RunEvent.sequence)
        ).all()
    stored: dict[uuid.UUID, list[tuple[str, str]]] = defaultdict(list)
    for run_id, key, event_id, _sequence in rows:
        stored[run_id].append((key, str(event_id)))
    for number, run_id in enumerate(runs):
        # Exactly the acknowledged events, once each, with their acknowledged ids, in the
        # order the runner sent them (sequence order is sending order).
        assert stored[run_id] == acked[number], f"runner {number}"
        assert [key for key, _ in acked[number]] == sent[number]
        assert len(set(sent[number])) == len(sent[number]) >= (REQUESTS // 2) * 6
