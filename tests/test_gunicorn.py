"""The service under real gunicorn processes (API.md § Runner API events, § Environment).

- Four workers, sixteen client threads writing events and batches to one run, with retries:
  every request is answered 200, every acknowledged event is stored exactly once, and each
  run's ``sequence`` is unique and increases in the order the events were sent.
- A secret shorter than 32 characters stops the whole server with one line; no worker is booted.
- Unset secrets are generated once into the instance folder (mode 0600) and survive a restart.
- With PostgreSQL unreachable the server still starts and answers 503 database_unavailable.
"""

from __future__ import annotations

import secrets
import stat
import threading
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from designrun.auth import runner_tokens
from designrun.extensions import db
from designrun.models import RunEvent
from tests.factories import bearer, make_run, make_user
from tests.servers import GunicornServer

pytestmark = pytest.mark.slow

THREADS = 16
ROUNDS = 8
SECRET_FILES = ("runner_auth_secret", "secret_key")


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    """The environment every server here starts from (add DATABASE_URL per test)."""
    instance = tmp_path / "instance"
    instance.mkdir()
    return {
        "DESIGNRUN_INSTANCE_PATH": str(instance),
        "RUNNER_AUTH_SECRET": secrets.token_urlsafe(32),
        "WEB_CONCURRENCY": "4",
    }


def server_env_dir(env: dict[str, str]) -> Path:
    """Where a server's logs go: beside its instance folder."""
    return Path(env["DESIGNRUN_INSTANCE_PATH"]).parent


def runner_bearer(secret: str, run_id: uuid.UUID) -> dict[str, str]:
    token, _ = runner_tokens.mint(secret, run_id, 3600)
    return bearer(token)


# --- (a) concurrent writers on one run -----------------------------------------------------


def _requests_of(thread: int) -> list[list[str | None]]:
    """The events (their idempotency keys, None for none) of each request one thread sends.

    Singles, batches with a key-less event and a key repeated inside the batch, batches that
    repeat keys of the previous request (a partial retry), and single events whose key another
    thread sends at about the same time (a runner retrying while its first attempt is running).
    """
    plan: list[list[str | None]] = []
    for r in range(ROUNDS):
        own = f"t{thread}-r{r}"
        if r % 4 == 0:
            plan.append([f"{own}-single"])
        elif r % 4 == 1:
            keys: list[str | None] = [f"{own}-e{j}" for j in range(6)]
            plan.append([*keys[:3], None, *keys[3:], keys[5]])
        elif r % 4 == 2:
            previous = plan[-1]
            plan.append([previous[0], previous[4], *(f"{own}-e{j}" for j in range(5))])
        else:
            plan.append([f"shared-r{r}-{thread % (THREADS // 2)}"])
    return plan


def _keyed(keys: list[str | None], ids: list[str]) -> list[str]:
    """The ids of the events that carry a key (a key-less event is new on every retry)."""
    return [event_id for key, event_id in zip(keys, ids, strict=False) if key is not None]


def _body(keys: list[str | None]) -> dict:
    events = [
        {"eventType": "log", "message": f"line {key}", **({"idempotencyKey": key} if key else {})}
        for key in keys
    ]
    return events[0] if len(events) == 1 else {"events": events}


def test_concurrent_events_on_one_run_are_stored_once_in_order(app, database_url, server_env):
    run = make_run(app, make_user(app), status="running")
    env = {**server_env, "DATABASE_URL": database_url}
    headers = runner_bearer(env["RUNNER_AUTH_SECRET"], run.id)
    plans = {thread: _requests_of(thread) for thread in range(THREADS)}
    results: dict[int, list[tuple[list[str | None], list[str]]]] = defaultdict(list)
    failures: list[str] = []
    start = threading.Barrier(THREADS)

    def send(session: requests.Session, url: str, keys: list[str | None]) -> list[str]:
        r = session.post(url, json=_body(keys), headers=headers, timeout=60)
        if r.status_code != 200:
            failures.append(f"{r.status_code} {r.text[:300]}")
            return []
        body = r.json()
        return body["eventIds"] if "eventIds" in body else [body["eventId"]]

    def writer(thread: int, url: str) -> None:
        try:
            with requests.Session() as session:
                start.wait(timeout=60)
                for number, keys in enumerate(plans[thread]):
                    ids = send(session, url, keys)
                    results[thread].append((keys, ids))
                    if number % 3 == 1:  # the answer was "lost": the runner sends it again
                        again = send(session, url, keys)
                        results[thread].append((keys, again))
                        if _keyed(keys, again) != _keyed(keys, ids):
                            failures.append(f"retry of {keys} answered {again}, first {ids}")
        except Exception as exc:  # a dead thread must fail the test, not shrink it
            failures.append(f"thread {thread}: {exc!r}")

    with GunicornServer(env, server_env_dir(server_env)) as server:
        url = f"{server.url}/api/runner/runs/{run.id}/events"
        threads = [threading.Thread(target=writer, args=(t, url)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        stderr = server.stderr()
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert sum(len(r) for r in results.values()) == THREADS * (ROUNDS + 3)
    assert "database is locked" not in stderr

    with app.app_context():
        rows = list(
            db.session.scalars(
                select(RunEvent).where(RunEvent.run_id == run.id).order_by(RunEvent.sequence)
            )
        )
    sequence = {str(row.id): row.sequence for row in rows}
    stored_keys = [row.idempotency_key for row in rows if row.idempotency_key is not None]
    assert len(stored_keys) == len(set(stored_keys)), "an idempotency key was stored twice"
    assert len(set(sequence.values())) == len(rows), "two events share a sequence"

    acked_by_key: dict[str, set[str]] = defaultdict(set)
    keyless_acks: list[str] = []
    sent = Counter(key for rs in results.values() for keys, _ in rs for key in keys if key)
    for thread_results in results.values():
        for keys, ids in thread_results:
            assert len(ids) == len(keys)
            for key, event_id in zip(keys, ids, strict=True):
                if key is None:
                    keyless_acks.append(event_id)
                else:
                    acked_by_key[key].add(event_id)
    # One id per key whoever sent it; every acknowledged event stored exactly once, nothing else.
    assert all(len(ids) == 1 for ids in acked_by_key.values()), acked_by_key
    acked = {next(iter(ids)) for ids in acked_by_key.values()} | set(keyless_acks)
    assert len(keyless_acks) == len(set(keyless_acks))
    assert acked == set(sequence)
    assert len(rows) == len(sent) + len(keyless_acks)
    assert set(stored_keys) == set(sent)

    # Events only this request sent (key-less, or a key no other request or retry carried)
    # follow the batch order, and each thread's later requests come after its earlier ones.
    for thread_results in results.values():
        last = 0
        for keys, ids in thread_results:
            own = [
                sequence[event_id]
                for key, event_id in zip(keys, ids, strict=True)
                if key is None or sent[key] == 1
            ]
            assert own == sorted(own) and len(set(own)) == len(own), (keys, own)
            if own:
                assert own[0] > last, (keys, own, last)
                last = own[-1]


# --- (b) a short secret stops the whole server ----------------------------------------------


@pytest.mark.parametrize("variable", ["RUNNER_AUTH_SECRET", "SECRET_KEY"])
def test_short_secret_stops_the_server_with_one_line_naming_it(server_env, variable):
    short = "too-short-secret"
    env = {**server_env, variable: short}
    server = GunicornServer(env, server_env_dir(server_env)).start()
    try:
        status = server.wait_exit(timeout=20)
        stderr = server.stderr()
    finally:
        server.stop()
    assert status not in (None, 0), stderr
    naming = [line for line in stderr.splitlines() if variable in line]
    assert len(naming) == 1, stderr
    assert "32" in naming[0]
    assert short not in stderr
    assert "Booting worker" not in stderr, "workers were started despite the bad setting"


# --- (c) generated secrets -----------------------------------------------------------------


def test_generated_secrets_are_kept_0600_and_survive_a_restart(app, database_url, server_env):
    run = make_run(app, make_user(app), status="running")
    env = {k: v for k, v in server_env.items() if k != "RUNNER_AUTH_SECRET"}
    env["DATABASE_URL"] = database_url
    instance = Path(env["DESIGNRUN_INSTANCE_PATH"])
    logs = server_env_dir(server_env)
    events = f"/api/runner/runs/{run.id}/events"

    with GunicornServer(env, logs, "first") as server:
        generated = {name: (instance / name).read_text() for name in SECRET_FILES}
        for name in SECRET_FILES:
            mode = stat.S_IMODE((instance / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))
            assert len(generated[name].strip()) >= 32
        assert generated["runner_auth_secret"] != generated["secret_key"]
        legacy = bearer(generated["runner_auth_secret"].strip())
        r = requests.post(
            f"{server.url}/api/runner/runs/{run.id}/token", headers=legacy, timeout=30
        )
        assert r.status_code == 200, r.text
        token = bearer(r.json()["runnerToken"])
        # Several requests: every worker knows the same secret.
        for n in range(8):
            r = requests.post(
                server.url + events, json={"eventType": f"log{n}"}, headers=token, timeout=30
            )
            assert r.status_code == 200, r.text
    assert sorted(p.name for p in instance.iterdir() if p.name.startswith(".")) == []

    with GunicornServer(env, logs, "second") as server:
        assert {name: (instance / name).read_text() for name in SECRET_FILES} == generated
        r = requests.post(
            server.url + events, json={"eventType": "after-restart"}, headers=token, timeout=30
        )
        assert r.status_code == 200, r.text
        r = requests.post(
            f"{server.url}/api/runner/runs/{run.id}/status",
            json={"status": "completed"},
            headers=token,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["runStatus"] == "completed"


# --- (d) PostgreSQL unreachable ------------------------------------------------------------


def test_server_starts_and_answers_503_while_postgresql_is_unreachable(server_env):
    env = {**server_env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/designrun"}
    run_id = uuid.uuid4()
    runner = runner_bearer(env["RUNNER_AUTH_SECRET"], run_id)
    calls = [
        ("POST", f"/api/runner/runs/{run_id}/events", runner, {"eventType": "log"}),
        ("POST", f"/api/runner/runs/{run_id}/status", runner, {"status": "running"}),
        ("GET", "/api/design/runs", bearer("a-session-token"), None),
        ("POST", "/api/auth/sign-in/email", {}, {"email": "a@example.com", "password": "x" * 8}),
    ]
    with GunicornServer(env, server_env_dir(server_env)) as server:
        for method, path, headers, body in calls:
            r = requests.request(method, server.url + path, json=body, headers=headers, timeout=30)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["Content-Type"].startswith("application/json")
            assert r.json()["ok"] is False
            assert r.json()["code"] == "database_unavailable"
        assert not server.exited()
