"""The scorecard's checks on hand-made records: what counts as a duplicate, a retry, a wait."""

from __future__ import annotations

from typing import Any

from designrun.conformance.embedded import RunState, StoredEvent
from designrun.conformance.faults import LOST, RATE_LIMITED, Fault
from designrun.conformance.injector import Exchange, sent_events
from designrun.conformance.scorecard import RunnerOutcome, score

OUTCOME = RunnerOutcome(
    exit_code=0,
    duration=1.0,
    timed_out=False,
    cancel_at=None,
    exited_at=1.0,
    stop_bound=15,
    token_ttl=60,
)


class Record:
    """Exchanges in arrival order and the events they stored, as the injector would note them."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.stored: list[StoredEvent] = []
        self.by_key: dict[str, str] = {}

    def post(
        self,
        endpoint: str,
        body: dict[str, Any],
        at: float,
        fault: Fault | None = None,
        status: int = 200,
    ) -> Exchange:
        exchange = Exchange(
            number=len(self.exchanges) + 1,
            endpoint=endpoint,
            index=0,
            arrived=at,
            fault=fault,
            token="valid",
            token_id="t",
            body=body,
            events=sent_events(body) if endpoint == "events" else [],
            status=status,
            delivered=fault is None or fault.kind != LOST,
            answered=at + 0.01,
        )
        if endpoint == "events" and status == 200:
            ids = []
            for event in exchange.events:
                if event.key and event.key in self.by_key:
                    ids.append(self.by_key[event.key])
                    continue
                row = f"id{len(self.stored) + 1}"
                raw = body["events"][len(ids)]
                self.stored.append(
                    StoredEvent(
                        len(self.stored) + 1,
                        event.key,
                        raw["eventType"],
                        raw.get("message"),
                        raw.get("metadata", {}),
                        row,
                    )
                )
                if event.key:
                    self.by_key[event.key] = row
                ids.append(row)
            exchange.answer = {"ok": True, "eventIds": ids}
        self.exchanges.append(exchange)
        return exchange

    def score(self) -> Any:
        return score(self.exchanges, RunState("completed", 1.0, None, self.stored, []), OUTCOME)


def line(message: str, key: str | None = None) -> dict[str, Any]:
    return {"eventType": "log", "message": message} | ({"idempotencyKey": key} if key else {})


def test_a_lost_batch_resent_under_new_keys_is_a_duplicate() -> None:
    record = Record()
    record.post("events", {"events": [line("a", "x:1"), line("b", "x:2")]}, 0.1, Fault(LOST))
    record.post("events", {"events": [line("a", "y:1"), line("b", "y:2")]}, 0.2)
    card = record.score()
    (finding,) = card.findings
    assert finding.check == "duplicates"
    assert "resent under new idempotency keys" in finding.message
    assert card.stats["duplicates"]["events"] == 2
    assert finding.requests[0].startswith("#1 POST events (2 events) at 0.10s: committed")


def test_a_message_repeated_later_in_the_log_is_not_a_duplicate() -> None:
    record = Record()
    record.post("events", {"events": [line("", "x:1")]}, 0.1, Fault(LOST))
    record.post("events", {"events": [line("", "x:1")]}, 0.2)  # the retry: the original id
    record.post("events", {"events": [line("", "x:2")]}, 0.3)  # another blank line
    card = record.score()
    assert card.findings == [], card.findings
    assert card.stats["events"]["distinct"] == 2


def test_retry_after_is_measured_on_the_same_endpoint_only() -> None:
    record = Record()
    record.post("status", {"progress": 0.1}, 0.1, Fault(RATE_LIMITED, retry_after=1), status=429)
    record.post("events", {"events": [line("meanwhile", "x:1")]}, 0.3)  # another sender: fine
    record.post("status", {"progress": 0.1}, 1.2)
    card = record.score()
    assert card.findings == [], card.findings
    assert card.stats["retryAfterWaits"] == [1.09]

    record.post("status", {"progress": 0.2}, 2.0, Fault(RATE_LIMITED, retry_after=1), status=429)
    record.post("status", {"progress": 0.2}, 2.5)
    (finding,) = record.score().findings
    assert finding.check == "retry_after"
    assert [r.split(" at ")[0] for r in finding.requests] == [
        '#4 POST status {"progress":0.2}',
        '#5 POST status {"progress":0.2}',
    ]
