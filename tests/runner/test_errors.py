"""Which answers are retried (connection errors, 429, 5xx) and which are final (other 4xx)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from designrun.runner import RunCancelled, RunnerClient, RunnerError
from tests.runner.fakeserver import FakeRunnerApi

ClientFactory = Callable[..., RunnerClient]
FakeFactory = Callable[..., FakeRunnerApi]


def error(status: int, code: str, headers: dict[str, str] | None = None) -> tuple:
    return (status, {"ok": False, "error": f"{code} happened", "code": code}, headers or {})


def test_a_401_is_raised_at_once_and_never_retried(
    fake_factory: FakeFactory, client_factory: ClientFactory
) -> None:
    fake = fake_factory(tokens={"the-right-token"})
    client = client_factory(fake, token="a-wrong-token", flush_interval=60)
    with pytest.raises(RunnerError) as info:
        client.set_status("running")
    assert (info.value.status, info.value.code) == (401, "unauthorized")
    assert not isinstance(info.value, RunCancelled)
    assert fake.outcomes() == ["401"]

    client.event("log", "kept")
    with pytest.raises(RunnerError) as info:
        client.flush()
    assert info.value.status == 401
    assert fake.outcomes() == ["401", "401"]
    assert client.pending == 1


def test_after_a_401_the_background_flusher_stops_sending(
    fake_factory: FakeFactory, client_factory: ClientFactory
) -> None:
    fake = fake_factory(tokens={"the-right-token"})
    client = client_factory(fake, token="a-wrong-token", flush_interval=0.01)
    client.event("log", "x")
    deadline = time.monotonic() + 10
    while not fake.outcomes():
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.2)
    assert fake.outcomes() == ["401"]
    assert client.pending == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "invalid_request"), (403, "forbidden"), (404, "not_found"), (415, "unsupported")],
)
def test_other_4xx_are_final(
    fake: FakeRunnerApi, client_factory: ClientFactory, status: int, code: str
) -> None:
    client = client_factory(fake)
    fake.forced["status"] = [error(status, code)]
    with pytest.raises(RunnerError) as info:
        client.set_progress(0.5)
    assert (info.value.status, info.value.code, info.value.retryable) == (status, code, False)
    assert len(fake.seen) == 1


def test_a_409_that_is_not_run_finished_is_a_plain_runner_error(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake)
    fake.forced["status"] = [error(409, "conflict")]
    with pytest.raises(RunnerError) as info:
        client.set_progress(0.5)
    assert not isinstance(info.value, RunCancelled)
    assert not client.cancelled


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_429_and_5xx_are_retried_until_max_attempts(
    fake: FakeRunnerApi, client_factory: ClientFactory, status: int
) -> None:
    client = client_factory(fake, max_attempts=4)
    fake.forced["status"] = [error(status, "busy")] * 4
    with pytest.raises(RunnerError) as info:
        client.set_status("running")
    assert (info.value.status, info.value.code, info.value.retryable) == (status, "busy", True)
    assert len(fake.seen) == 4

    fake.forced["status"] = [error(status, "busy")] * 3
    assert client.set_status("running")["runStatus"] == "running"
    assert len(fake.seen) == 8


def test_a_5xx_without_a_json_body_is_retried(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake)
    fake.forced["status"] = [(502, {}, {})]
    assert client.set_progress(0.2)["progress"] == 0.2


def test_a_run_finished_409_is_a_cancellation(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    fake.status = "cancelled"
    client = client_factory(fake)
    assert not client.cancelled
    with pytest.raises(RunCancelled) as info:
        client.set_status("running")
    assert isinstance(info.value, RunnerError)
    assert (info.value.status, info.value.code, info.value.run_status) == (
        409,
        "run_finished",
        "cancelled",
    )
    assert client.cancelled and client.run_status == "cancelled"
    assert len(fake.seen) == 1

    with pytest.raises(RunCancelled):
        client.set_progress(0.9)
    # Repeating the run's own terminal status is a 200, not a cancellation.
    assert client.set_status("cancelled")["runStatus"] == "cancelled"
    # Events are accepted in any state.
    client.event("log", "late line")
    client.flush()
    assert fake.events[0]["message"] == "late line"


def test_retry_after_is_honoured_and_capped(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake, backoff_cap=2.0)
    delays: list[float] = []
    client._sleep = delays.append
    fake.forced["status"] = [
        error(429, "rate_limited", {"Retry-After": "7"}),
        error(503, "database_unavailable", {"Retry-After": "1"}),
        error(429, "rate_limited", {"Retry-After": "0"}),
    ]
    client.set_progress(0.1)
    assert delays == [2.0, 1.0, 0.0]


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake, backoff_base=1.0, backoff_cap=4.0, max_attempts=6)
    delays: list[float] = []
    client._sleep = delays.append
    fake.forced["status"] = [error(503, "database_unavailable")] * 5
    client.set_progress(0.1)
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(delays) == 5
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling, delays


def test_connection_errors_are_retried(
    fake_factory: FakeFactory, client_factory: ClientFactory
) -> None:
    fake = fake_factory()
    fake.stop()
    client = client_factory(fake, max_attempts=3)
    delays: list[float] = []
    client._sleep = delays.append
    with pytest.raises(RunnerError) as info:
        client.set_status("running")
    assert info.value.status is None and info.value.retryable
    assert len(delays) == 2


def test_bad_arguments_fail_before_any_request(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake)
    with pytest.raises(ValueError):
        client.set_status("queued")
    for progress in (float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(ValueError):
            client.set_progress(progress)  # type: ignore[arg-type]
    assert fake.seen == []


def test_retry_after_holds_for_an_explicit_flush_that_takes_over(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    # Found by designrun-runner-check: the final set_status() flushed the events the background
    # flusher was holding back for a 429's Retry-After, long before it had passed.
    client = client_factory(fake, backoff_cap=60.0)
    fake.forced["events"] = [error(429, "rate_limited", {"Retry-After": "30"})]
    client.event("log", "held back")
    deadline = time.monotonic() + 10
    while fake.outcomes("events") != ["forced"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.outcomes("events") == ["forced"]
    delays: list[float] = []
    client._sleep = delays.append  # the explicit flush sleeps through this seam
    client.flush()
    assert len(delays) == 1 and 25 < delays[0] <= 30, delays
    assert fake.outcomes("events") == ["forced", "ok"]
