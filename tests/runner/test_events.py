"""Event delivery: exactly once, in order, through dropped connections, 503s, 429s and outages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from designrun.runner import RunnerClient, RunnerError
from tests.runner.fakeserver import Chaos, FakeRunnerApi

ClientFactory = Callable[..., RunnerClient]
FakeFactory = Callable[..., FakeRunnerApi]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def key_number(event: dict) -> int:
    return int(event["idempotencyKey"].rsplit(":", 1)[1])


def test_events_from_three_threads_arrive_once_and_in_order_through_chaos(
    fake_factory: FakeFactory, client_factory: ClientFactory
) -> None:
    chaos = Chaos(drop_before=0.08, drop_after=0.08, unavailable=0.08, rate_limited=0.08)
    fake = fake_factory(seed=20261129, chaos=chaos)
    client = client_factory(fake, batch_size=40, max_attempts=50)
    counts = [667, 667, 666]

    def produce(thread: int) -> None:
        for i in range(counts[thread]):
            client.event("log", f"t{thread}-{i}", {"thread": thread, "i": i})

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.flush(timeout=60)

    stored = fake.events
    assert len(stored) == 2000
    assert len({e["idempotencyKey"] for e in stored}) == 2000
    for t, count in enumerate(counts):
        assert [e["metadata"]["i"] for e in stored if e["metadata"]["thread"] == t] == list(
            range(count)
        )
    # The global order is the order of the event() calls (the key counter is taken under the
    # same lock as the queue position).
    assert [key_number(e) for e in stored] == list(range(1, 2001))
    assert [e["sequence"] for e in stored] == list(range(1, 2001))
    assert client.pending == 0

    outcomes = fake.outcomes("events")
    for outcome in ("drop_before", "drop_after", "503", "429", "ok"):
        assert outcome in outcomes, outcomes
    # At least one batch was stored but its answer lost, and resending it stored nothing new.
    lost = [s for s in fake.seen if s.outcome == "drop_after" and s.keys]
    assert lost
    resent = [s for s in fake.seen if s.outcome == "ok" and set(s.keys) & set(lost[0].keys)]
    assert resent, "the batch whose answer was lost was not resent"


def test_the_background_flusher_sends_on_batch_size_and_on_interval(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    by_size = client_factory(fake, batch_size=10, flush_interval=60)
    for i in range(10):
        by_size.event("log", f"size-{i}")
    wait_until(lambda: len(fake.events) == 10)

    by_time = client_factory(fake, batch_size=100, flush_interval=0.05)
    for i in range(3):
        by_time.event("log", f"time-{i}")
    wait_until(lambda: len(fake.events) == 13)
    assert [e["message"] for e in fake.events[10:]] == ["time-0", "time-1", "time-2"]


def test_nothing_is_lost_while_the_server_is_unreachable(
    fake_factory: FakeFactory, client_factory: ClientFactory
) -> None:
    fake = fake_factory()
    fake.stop()  # the port is known; nothing listens there now
    client = client_factory(fake, batch_size=25, max_attempts=2)
    for i in range(300):
        client.event("log", str(i))

    with pytest.raises(RunnerError) as info:
        client.flush()
    assert info.value.status is None and info.value.retryable
    assert client.pending == 300
    time.sleep(0.1)  # the background flusher keeps failing meanwhile, and keeps everything
    assert client.pending == 300

    fake.start()  # back on the same port: the background flusher delivers, nobody calls flush()
    wait_until(lambda: client.pending == 0)
    assert [e["message"] for e in fake.events] == [str(i) for i in range(300)]
    assert len(fake.keys) == 300


def test_a_batch_that_exhausts_its_retries_stays_at_the_head_of_the_queue(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake, flush_interval=60, max_attempts=2)
    client.event("log", "first")
    fake.forced["events"] = [(503, {"ok": False, "code": "database_unavailable"}, {})] * 2
    with pytest.raises(RunnerError) as info:
        client.flush()
    assert (info.value.status, info.value.code) == (503, "database_unavailable")
    client.event("log", "second")
    client.flush()
    assert [e["message"] for e in fake.events] == ["first", "second"]


def test_a_flush_with_a_timeout_gives_up_and_keeps_the_events(
    fake_factory: FakeFactory, client_factory: ClientFactory
) -> None:
    fake = fake_factory()
    fake.stop()
    client = client_factory(fake, flush_interval=60, max_attempts=10**6, backoff_cap=0.02)
    client.event("log", "kept")
    with pytest.raises(RunnerError) as info:
        client.flush(timeout=0.2)
    assert info.value.code == "timeout"
    assert client.pending == 1
    client.close(timeout=0.1)


def test_status_flushes_the_queued_events_first(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake, flush_interval=60, batch_size=7)
    client.set_status("running")
    for i in range(20):
        client.event("log", str(i))
    answer = client.set_status("completed", progress=1.0)
    assert answer["runStatus"] == "completed"
    assert fake.timeline[0] == "status:running"
    assert fake.timeline[-1] == "status:completed"
    assert fake.timeline[-2] == "events:20"
    assert client.run_status == "completed"


def test_an_event_the_server_refuses_is_dropped_and_the_others_are_kept_in_order(
    fake: FakeRunnerApi, client_factory: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake.reject_type = "poison"
    client = client_factory(fake, flush_interval=60)
    for event_type in ("a", "b", "poison", "c", "d"):
        client.event(event_type)
    with caplog.at_level(logging.ERROR, logger="designrun.runner"):
        client.flush()
    assert [e["eventType"] for e in fake.events] == ["a", "b", "c", "d"]
    assert "poison" in caplog.text
    assert client.pending == 0


def test_events_the_server_would_refuse_fail_at_once_and_queue_nothing(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake, flush_interval=60)
    bad: list[tuple[tuple, dict]] = [
        (("",), {}),
        (("x" * 101,), {}),
        (("log", "m" * 65_537), {}),
        (("log", "nul \x00"), {}),
        (("log", "lone \ud800"), {}),
        (("log",), {"metadata": {"x": float("nan")}}),
        (("log",), {"metadata": {"x": object()}}),
        (("log",), {"metadata": {"x": "y" * 70_000}}),
    ]
    for args, kwargs in bad:
        with pytest.raises((ValueError, TypeError)):
            client.event(*args, **kwargs)
    assert client.pending == 0


def test_metadata_is_copied_when_the_event_is_queued(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake, flush_interval=60)
    metadata = {"step": 1}
    client.event("log", "m", metadata)
    metadata["step"] = 2
    client.flush()
    assert fake.events[0]["metadata"] == {"step": 1}


def test_close_sends_what_is_queued_and_then_refuses_new_events(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    with client_factory(fake, flush_interval=60) as client:
        client.event("log", "last words")
    assert [e["message"] for e in fake.events] == ["last words"]
    with pytest.raises(RuntimeError):
        client.event("log", "too late")
    client.close()  # a second close is harmless
