"""Correctness under load, through the HTTP API: every acknowledged event stored once, in order.

Simulated runners (one thread and one run each) post single events and batches with idempotency
keys, resend some requests as a runner does after a timeout, and retry on errors until the
request is acknowledged. Every event's ``message`` is its idempotency key. Afterwards each run's
log is read back through GET /api/design/runs/:runId/events and compared with what was acked.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from dataset import User

BATCH_SIZE = 20
MAX_ATTEMPTS = 5


@dataclass
class RunnerLog:
    """What one simulated runner sent and what the server acknowledged, in order."""

    run_id: uuid.UUID
    acked: list[tuple[str, str]] = field(default_factory=list)  # (key, eventId)
    requests: int = 0
    resent: int = 0
    failed_attempts: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class Verification:
    """The outcome over all runners."""

    runners: int = 0
    requests: int = 0
    resent: int = 0
    failed_attempts: int = 0
    acked_events: int = 0
    stored_events: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.acked_events > 0


def _post(
    http: requests.Session, url: str, body: dict[str, Any], log: RunnerLog
) -> dict[str, Any] | None:
    """POST until a 200 (a runner retries the same body with the same keys)."""
    for _ in range(MAX_ATTEMPTS):
        try:
            resp = http.post(url, json=body, timeout=30)
        except requests.RequestException:
            log.failed_attempts += 1
            continue
        if resp.status_code == 200:
            data: dict[str, Any] = resp.json()
            return data
        log.failed_attempts += 1
        time.sleep(0.05)
    log.problems.append(f"run {log.run_id}: request never acknowledged: {body!r:.200}")
    return None


def _event(key: str, runner: int, step: int) -> dict[str, Any]:
    return {
        "eventType": "log",
        "message": key,
        "metadata": {"runner": runner, "step": step},
        "idempotencyKey": key,
    }


def _runner(base_url: str, token: str, runner: int, log: RunnerLog, deadline: float) -> None:
    url = f"{base_url}/api/runner/runs/{log.run_id}/events"
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {token}"
        step = 0
        while time.monotonic() < deadline:
            step += 1
            if step % 4 == 0:
                keys = [f"v{runner}-{step}-{j}" for j in range(BATCH_SIZE)]
                events = [_event(k, runner, step) for k in keys]
                # The same key twice in one batch: stored once, both positions get its id.
                events.append(dict(events[0]))
                keys.append(keys[0])
                body: dict[str, Any] = {"events": events}
            else:
                keys = [f"v{runner}-{step}"]
                body = _event(keys[0], runner, step)
            answer = _post(http, url, body, log)
            log.requests += 1
            if answer is None:
                continue
            ids = answer["eventIds"] if "events" in body else [answer["eventId"]]
            if len(ids) != len(keys):
                log.problems.append(f"run {log.run_id}: {len(keys)} events, {len(ids)} ids")
                continue
            log.acked.extend(zip(keys, ids, strict=True))
            if step % 5 == 0:  # a retry after a lost answer: same keys, same ids
                log.resent += 1
                again = _post(http, url, body, log)
                if again is not None:
                    ids2 = again["eventIds"] if "events" in body else [again["eventId"]]
                    if ids2 != ids:
                        log.problems.append(f"run {log.run_id}: resent request got new ids")


def _stored(base_url: str, user: User, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """The run's whole log through the events endpoint, page by page."""
    events: list[dict[str, Any]] = []
    after: int | None = None
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {user.token}"
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if after is not None:
                params["after"] = after
            resp = http.get(
                f"{base_url}/api/design/runs/{run_id}/events", params=params, timeout=60
            )
            resp.raise_for_status()
            body = resp.json()
            events.extend(body["events"])
            after = body["nextCursor"]
            if after is None:
                return events


def _compare(log: RunnerLog, stored: list[dict[str, Any]]) -> list[str]:
    problems = []
    run = log.run_id
    seqs = [e["sequence"] for e in stored]
    if any(b <= a for a, b in itertools.pairwise(seqs)):
        problems.append(f"run {run}: sequences not strictly increasing")
    stored_ids = [e["id"] for e in stored]
    if len(set(stored_ids)) != len(stored_ids):
        problems.append(f"run {run}: an event id is stored twice")
    first_ack: dict[str, str] = {}
    order: list[str] = []
    for key, event_id in log.acked:
        if key not in first_ack:
            first_ack[key] = event_id
            order.append(event_id)
        elif first_ack[key] != event_id:
            problems.append(f"run {run}: key {key} acked with two ids")
    if stored_ids != order:
        missing = len(set(order) - set(stored_ids))
        extra = len(set(stored_ids) - set(order))
        problems.append(
            f"run {run}: stored log differs from acks ({missing} acked not stored, "
            f"{extra} stored not acked, order {'differs' if not missing and not extra else '?'})"
        )
    key_of = {event_id: key for key, event_id in first_ack.items()}
    wrong = [e["id"] for e in stored if key_of.get(e["id"], e["message"]) != e["message"]]
    if wrong:
        problems.append(f"run {run}: {len(wrong)} stored events carry another event's message")
    return problems


def verify(
    base_url: str, user: User, runs: list[tuple[uuid.UUID, str]], seconds: float
) -> Verification:
    """Drive one runner thread per (run, token) for ``seconds``, then compare logs with acks."""
    logs = [RunnerLog(run_id=run_id) for run_id, _ in runs]
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_runner, args=(base_url, token, i, logs[i], deadline))
        for i, (_, token) in enumerate(runs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = Verification(runners=len(logs))
    for log in logs:
        stored = _stored(base_url, user, log.run_id)
        result.requests += log.requests
        result.resent += log.resent
        result.failed_attempts += log.failed_attempts
        result.acked_events += len({key for key, _ in log.acked})
        result.stored_events += len(stored)
        result.problems.extend(log.problems)
        result.problems.extend(_compare(log, stored))
    return result
