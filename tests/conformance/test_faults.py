"""The kit's faults on their own, against the embedded server: each does what it says.

A lost answer really committed the request first; 503/429/400 store nothing; a slow answer is
held back; the plan is reproducible from its seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
import requests

from designrun.conformance.embedded import EmbeddedServer
from designrun.conformance.faults import (
    LOST,
    PROFILES,
    RATE_LIMITED,
    REFUSED,
    SLOW,
    UNAVAILABLE,
    FaultPlan,
)

Serve = Callable[["FaultPlan"], tuple[EmbeddedServer, dict]]
QUIET = dataclasses.replace(PROFILES["smoke"], script={}, refuse_one=False)


def plan_with(script: dict[str, dict[int, str]], **changes: object) -> FaultPlan:
    profile = dataclasses.replace(QUIET, script=script, max_consecutive={"*": 5}, **changes)
    return FaultPlan(profile, seed=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    embedded = EmbeddedServer(tmp_path_factory.mktemp("kit"), plan_with({}), token_ttl=3600)
    yield embedded.start()
    embedded.stop()


@pytest.fixture
def serve(server: EmbeddedServer) -> Callable[[FaultPlan], tuple[EmbeddedServer, dict]]:
    """``serve(plan)``: the shared embedded server with this plan, a new run and its job."""

    def start(plan: FaultPlan) -> tuple[EmbeddedServer, dict]:
        server.injector.plan = plan
        server.injector.exchanges.clear()
        return server, server.create_run("a prompt", {})

    return start


def post(job: dict, endpoint: str, body: dict) -> requests.Response:
    with requests.Session() as session:
        return session.post(
            f"{job['callbackUrl']}/{endpoint}",
            json=body,
            headers={"Authorization": f"Bearer {job['runnerToken']}"},
            timeout=10,
        )


def test_a_lost_answer_is_committed_before_the_connection_drops(serve: Serve) -> None:
    server, job = serve(plan_with({"events": {1: LOST}}))
    with pytest.raises(requests.ConnectionError):
        post(job, "events", {"eventType": "log", "message": "once", "idempotencyKey": "k:1"})

    stored = server.state().events
    assert [(e.message, e.key) for e in stored] == [("once", "k:1")]
    (exchange,) = server.injector.exchanges
    assert (exchange.status, exchange.delivered) == (200, False)
    assert exchange.event_ids == [stored[0].id]
    # The retry a correct runner sends is answered with the original id, nothing stored again.
    again = post(job, "events", {"eventType": "log", "message": "once", "idempotencyKey": "k:1"})
    assert again.json()["eventId"] == stored[0].id
    assert len(server.state().events) == 1


def test_a_lost_status_answer_still_moves_the_run(serve: Serve) -> None:
    server, job = serve(plan_with({"status": {1: LOST}}))
    with pytest.raises(requests.ConnectionError):
        post(job, "status", {"status": "running"})
    assert server.state().status == "running"


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        (UNAVAILABLE, 503, "service_unavailable"),
        (RATE_LIMITED, 429, "rate_limited"),
        (REFUSED, 400, "invalid_request"),
    ],
)
def test_injected_errors_store_nothing(serve: Serve, kind: str, status: int, code: str) -> None:
    script = {} if kind == REFUSED else {"events": {1: kind}}
    server, job = serve(plan_with(script, refuse_one=kind == REFUSED))
    if kind == REFUSED:
        assert post(job, "events", {"eventType": "log", "message": "first"}).status_code == 200
    answer = post(job, "events", {"eventType": "log", "message": "refused or not"})

    assert answer.status_code == status, answer.text
    assert answer.json() == {"ok": False, "error": answer.json()["error"], "code": code}
    if kind == RATE_LIMITED:
        assert answer.headers["Retry-After"] == "1"
    assert [e.message for e in server.state().events] == (["first"] if kind == REFUSED else [])


def test_a_slow_answer_is_held_back_after_the_app_answered(serve: Serve) -> None:
    server, job = serve(plan_with({"status": {1: SLOW}}, slow=(0.3, 0.3)))
    assert post(job, "status", {"status": "running"}).json()["runStatus"] == "running"
    (exchange,) = server.injector.exchanges
    assert exchange.fault is not None and exchange.fault.delay == 0.3
    assert exchange.answered is not None and exchange.answered - exchange.arrived >= 0.3


def test_an_expired_token_gets_no_fault_and_is_recorded_as_expired(serve: Serve) -> None:
    server, job = serve(plan_with({"status": {1: UNAVAILABLE}}))
    from designrun.auth import runner_tokens

    expired, _ = runner_tokens.mint(server.secret, server.run_id, -5)
    answer = requests.post(
        f"{job['callbackUrl']}/status",
        json={"status": "running"},
        headers={"Authorization": f"Bearer {expired}"},
        timeout=10,
    )
    assert answer.status_code == 401
    (exchange,) = server.injector.exchanges
    assert exchange.fault is None and exchange.token == "expired"
    assert exchange.token_expired_for is not None and exchange.token_expired_for >= 5


def test_the_plan_is_reproducible_from_its_seed() -> None:
    def decisions(seed: int) -> list[object]:
        plan = FaultPlan(PROFILES["hostile"], seed)
        return [
            plan.decide(endpoint, refusable=n % 3 == 0)
            for n in range(60)
            for endpoint in ("events", "status")
        ]

    assert decisions(7) == decisions(7)
    assert decisions(7) != decisions(8)
    kinds = [fault.kind for _, fault in decisions(7) if fault is not None]
    assert len(kinds) > 60  # hostile: a fault on most requests
    assert {LOST, UNAVAILABLE, RATE_LIMITED, SLOW, REFUSED} <= set(kinds)


def test_no_endpoint_gets_more_faults_in_a_row_than_the_profile_allows() -> None:
    plan = FaultPlan(PROFILES["hostile"], 3)
    run = longest = 0
    for _ in range(500):
        _, fault = plan.decide("events")
        run = run + 1 if fault is not None else 0
        longest = max(longest, run)
    assert longest <= PROFILES["hostile"].consecutive_limit("events")
