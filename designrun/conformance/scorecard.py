"""The scorecard: what the server stored and saw, checked against what a correct runner does.

Each check yields at most one ``Finding`` (a check name, one sentence, and the requests that show
it). The check names are stable, for CI and for the tests:

``final_status``  the run did not end as it should (``completed``; ``cancelled`` after a cancel)
``exit_code``     the runner exited non-zero although the run was not cancelled
``timeout``       the runner was still running at ``--timeout`` and was killed
``events_lost``   events the runner sent (or declared with ``eventCount``) that were never stored
``duplicates``    events or artifacts stored twice (a retry without idempotency keys)
``order``         events stored out of the runner's own order (its per-event counter)
``retry_after``   a request sent again before the ``Retry-After`` of a 429 had passed
``client_error_retried``  the refused (400) request was sent again
``cancel``        the runner kept working after the cancel (409), or stopped too late
``token``         a request with an expired token: the runner did not refresh it
``artifacts``     uploads (or the declared ``artifactCount``) that did not end up registered
``rejected``      the server refused a request for a reason of its own (a 4xx not injected)

When the ``token`` finding is present, the findings it causes (a run left unfinished, events or
artifacts never stored, a failing exit code) are folded into it: the root cause is the finding.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, field
from typing import Any

from designrun.conformance.embedded import RunState
from designrun.conformance.faults import KINDS, LOST, RATE_LIMITED, REFUSED
from designrun.conformance.injector import Exchange, canonical, event_counter

RETRY_AFTER_TOLERANCE = 0.05  # seconds: clocks and scheduling, not a runner's shortcut
RESEND_WINDOW = 0.9  # seconds: an identical progress report sooner than this is a retry
MAX_SHOWN = 5  # requests shown per finding
TERMINAL = ("completed", "failed", "cancelled")
_CONSEQUENCES = ("final_status", "events_lost", "artifacts", "exit_code")


@dataclass
class Finding:
    check: str
    message: str
    requests: list[str] = field(default_factory=list)


@dataclass
class RunnerOutcome:
    """How the runner process and the run went, as the CLI saw them."""

    exit_code: int | None  # None: killed at the timeout
    duration: float  # seconds from start to exit
    timed_out: bool
    cancel_at: float | None  # seconds since the runner started, when the kit cancelled
    exited_at: float  # same clock
    stop_bound: float  # seconds the runner may take to stop after a cancel
    token_ttl: int
    cancel_requested: bool = False  # --cancel (cancel_at stays None if the run finished first)


@dataclass
class Scorecard:
    ok: bool
    findings: list[Finding]
    stats: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings], "stats": self.stats}


def _shown(exchanges: list[Exchange]) -> list[str]:
    unique = sorted({e.number: e for e in exchanges}.values(), key=lambda e: e.number)
    lines = [e.describe() for e in unique[:MAX_SHOWN]]
    if len(unique) > MAX_SHOWN:
        lines.append(f"… and {len(unique) - MAX_SHOWN} more")
    return lines


def _final_status_body(exchanges: list[Exchange]) -> dict[str, Any] | None:
    """The last status request that carried a terminal status (what the runner declared)."""
    for exchange in reversed(exchanges):
        body = exchange.body or {}
        if exchange.endpoint == "status" and body.get("status") in TERMINAL:
            return body
    return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class _Checker:
    def __init__(self, exchanges: list[Exchange], state: RunState, outcome: RunnerOutcome) -> None:
        self.exchanges = exchanges
        self.state = state
        self.outcome = outcome
        self.findings: list[Finding] = []
        self.stats: dict[str, Any] = {}
        self.events_x = [e for e in exchanges if e.endpoint == "events"]
        self.refused = [e for e in exchanges if e.fault is not None and e.fault.kind == REFUSED]
        self.refused_content = {ev.content for e in self.refused for ev in e.events}
        self.refused_keys = {ev.key for e in self.refused for ev in e.events if ev.key}
        self.runner_events = list(state.events)

    def add(self, check: str, message: str, shown: list[Exchange] | None = None) -> None:
        self.findings.append(Finding(check, message, _shown(shown or [])))

    # --- the run --------------------------------------------------------------------------

    def final_status(self) -> None:
        expected = "cancelled" if self.outcome.cancel_at is not None else "completed"
        status = self.state.status
        self.stats["finalStatus"] = status
        statuses = [e for e in self.exchanges if e.endpoint == "status"]
        if status == expected or (expected == "cancelled" and status in TERMINAL):
            return  # a run that finished before the cancel landed is fine too
        if status in TERMINAL:
            error = f": {self.state.error.splitlines()[0]}" if self.state.error else ""
            self.add(
                "final_status", f"the run ended {status}, expected {expected}{error}", statuses[-1:]
            )
        else:
            self.add(
                "final_status",
                f"the runner never reported a final status (run {status})",
                statuses[-1:],
            )

    def process(self) -> None:
        outcome = self.outcome
        self.stats["exitCode"] = outcome.exit_code
        self.stats["runnerSeconds"] = round(outcome.duration, 2)
        last = self.exchanges[-1:]  # where the runner was when it ended
        if outcome.timed_out:
            self.add(
                "timeout",
                f"the runner was still running after {outcome.duration:.0f}s and was killed",
                last,
            )
        elif outcome.exit_code not in (0, None) and outcome.cancel_at is None:
            self.add("exit_code", f"the runner exited with status {outcome.exit_code}", last)

    # --- events ---------------------------------------------------------------------------

    def events(self) -> None:
        # Only what the runner sent: the server writes events of its own (run.cancelled, …).
        sent = {ev.content for e in self.events_x for ev in e.events}
        stored = [
            e
            for e in self.state.events
            if e.key or canonical([e.event_type, e.message, e.metadata]) in sent
        ]
        self.runner_events = stored
        stored_keys = {e.key for e in stored if e.key}
        identities: dict[Any, list[str]] = collections.defaultdict(list)
        for event in stored:
            counter = event_counter(event.key, event.metadata)
            identity = event.key or (("counter", counter) if counter else ("row", event.id))
            identities[identity].append(event.id)
        distinct = len(identities)
        declared_body = _final_status_body(self.exchanges) or {}
        declared = _count(declared_body.get("eventCount"))
        self.stats["events"] = {
            "sentRequests": len(self.events_x),
            "declared": declared,
            "stored": len(stored),
            "distinct": distinct,
            "refusedByKit": len(self.refused_content),
        }
        self._lost(stored_keys, stored, distinct, declared)
        self._duplicates(identities)
        self._order()

    def _lost(
        self, stored_keys: set[str], stored: list[Any], distinct: int, declared: int | None
    ) -> None:
        missing: list[str] = []
        shown: list[Exchange] = []
        for exchange in self.events_x:
            for event in exchange.events:
                if (
                    event.key
                    and event.key not in stored_keys
                    and event.key not in self.refused_keys
                ):
                    if event.key not in missing:
                        missing.append(event.key)
                        shown.append(exchange)
        stored_counters = {
            c for c in (event_counter(e.key, e.metadata) for e in stored) if c is not None
        }
        refused_counters = {ev.counter for e in self.refused for ev in e.events if ev.counter}
        for exchange in self.events_x:
            for event in exchange.events:
                counter = event.counter
                name = f"{counter[0]} {counter[1]}" if counter else ""
                if (
                    not event.key
                    and counter is not None
                    and counter not in stored_counters
                    and counter not in refused_counters
                    and name not in missing
                ):
                    missing.append(name)
                    shown.append(exchange)
        short = 0 if declared is None else declared - distinct - len(self.refused_content)
        if missing:
            self.add(
                "events_lost",
                f"{len(missing)} event(s) the runner sent were never stored (it gave up on "
                f"them or resent them changed)"
                + (f"; it declared eventCount {declared}, {distinct} stored" if short > 0 else ""),
                shown,
            )
        elif short > 0:
            failed = [e for e in self.events_x if e.fault is not None and e.fault.kind != LOST]
            self.add(
                "events_lost",
                f"the runner declared eventCount {declared} but only {distinct} distinct events "
                f"were stored ({len(self.refused_content)} refused by the kit)",
                failed,
            )

    def _duplicates(self, identities: dict[Any, list[str]]) -> None:
        # Stored rows that repeat an event: the same key or counter twice (a keyless resend)...
        duplicates = {row for rows in identities.values() for row in rows[1:]}
        shown: list[Exchange] = []
        rekeyed = False
        # ... or the content of a lost answer's events stored again under a new id by the next
        # events request (the retry): resent without keys, or with new keys (the same key gets
        # the original id). Only that request: a later log line may rightly repeat a message.
        for lost in self.events_x:
            if lost.fault is None or lost.fault.kind != LOST or lost.status != 200:
                continue
            later = self._follow_up(lost)
            if later is None or later.status != 200:
                continue
            originals = dict(zip((ev.content for ev in lost.events), lost.event_ids, strict=False))
            again = [
                (ev, new_id)
                for ev, new_id in zip(later.events, later.event_ids, strict=False)
                if ev.content in originals and originals[ev.content] != new_id
            ]
            if again:
                shown += [lost, later]
                duplicates.update(new_id for _, new_id in again)
                rekeyed = rekeyed or any(ev.key for ev, _ in again)
        artifacts = self._artifact_duplicates()
        extra = len(duplicates)
        self.stats["duplicates"] = {"events": extra, "artifacts": len(artifacts) // 2}
        if extra or artifacts:
            keyless = any(not ev.key for e in self.events_x for ev in e.events)
            why = (
                " (resent under new idempotency keys)"
                if rekeyed
                else " (its events carry no idempotencyKey)"
                if keyless
                else ""
            )
            self.add(
                "duplicates",
                f"{extra} event(s) and {len(artifacts) // 2} artifact(s) stored twice after "
                f"retries{why}",
                shown + artifacts,
            )

    def _artifact_duplicates(self) -> list[Exchange]:
        uploads = [e for e in self.exchanges if e.endpoint == "artifacts"]
        stored = {a.id for a in self.state.artifacts}
        shown: list[Exchange] = []
        for position, lost in enumerate(uploads):
            first = (lost.answer or {}).get("artifactId")
            if lost.fault is None or lost.fault.kind != LOST or first not in stored:
                continue
            for later in uploads[position + 1 :]:
                second = (later.answer or {}).get("artifactId")
                if (
                    later.artifact_name == lost.artifact_name
                    and second in stored
                    and second != first
                ):
                    shown += [lost, later]
                    break
        return shown

    def _order(self) -> None:
        seen: set[tuple[str, int]] = set()
        last: dict[str, int] = {}
        for event in self.runner_events:
            counter = event_counter(event.key, event.metadata)
            if counter is None or counter in seen:
                continue
            seen.add(counter)
            series, number = counter
            if number < last.get(series, 0):
                carriers = [
                    e
                    for e in self.events_x
                    if any(ev.counter in (counter, (series, last[series])) for ev in e.events)
                ]
                self.add(
                    "order",
                    f"event {number} was stored after event {last[series]} (sequence "
                    f"{event.sequence}): the log is out of the runner's order",
                    carriers,
                )
                return
            last[series] = number
        self.stats["orderChecked"] = len(seen)

    # --- faults ---------------------------------------------------------------------------

    def _follow_up(self, exchange: Exchange) -> Exchange | None:
        answered = exchange.answered if exchange.answered is not None else exchange.arrived
        for later in self.exchanges[exchange.number :]:
            if later.endpoint == exchange.endpoint and later.arrived >= answered:
                return later
        return None

    def _is_retry(self, exchange: Exchange, later: Exchange) -> bool:
        if exchange.endpoint == "events":
            keys = {ev.key for ev in exchange.events if ev.key}
            contents = {ev.content for ev in exchange.events}
            return any(ev.key in keys or ev.content in contents for ev in later.events)
        if exchange.endpoint == "artifacts":
            same_key = exchange.artifact_key and later.artifact_key == exchange.artifact_key
            return bool(same_key or later.artifact_name == exchange.artifact_name)
        if exchange.endpoint == "status":
            return later.body == exchange.body
        return True  # a token request is a token request

    def faults(self) -> None:
        per_kind: dict[str, dict[str, int]] = {k: {"injected": 0, "retried": 0} for k in KINDS}
        waits: list[float] = []
        early: list[Exchange] = []
        for exchange in self.exchanges:
            if exchange.fault is None:
                continue
            kind = exchange.fault.kind
            per_kind[kind]["injected"] += 1
            later = self._follow_up(exchange)
            if later is not None and self._is_retry(exchange, later):
                per_kind[kind]["retried"] += 1
            if kind == RATE_LIMITED and later is not None and exchange.answered is not None:
                wait = later.arrived - exchange.answered
                waits.append(round(wait, 3))
                if wait < (exchange.fault.retry_after or 0) - RETRY_AFTER_TOLERANCE:
                    early += [exchange, later]
        self.stats["faults"] = per_kind
        self.stats["retryAfterWaits"] = waits
        if early:
            self.add(
                "retry_after",
                f"{len(early) // 2} request(s) came back before the 429's Retry-After had passed "
                f"(shortest wait {min(waits):.2f}s)",
                early,
            )
        retried = [
            later
            for refused in self.refused
            for later in self.exchanges[refused.number :]
            if self._resends_refused(refused, later)
        ]
        self.stats["clientErrorsRetried"] = len(retried)
        if retried:
            self.add(
                "client_error_retried",
                f"the request refused with 400 was sent again {len(retried)} time(s): a 4xx other "
                "than 401/409/429 is final",
                self.refused + retried,
            )

    def _resends_refused(self, refused: Exchange, later: Exchange) -> bool:
        if refused.endpoint == "events":
            return any(
                (ev.key and ev.key in self.refused_keys) or ev.content in self.refused_content
                for ev in later.events
            )
        # A progress report: the same body again soon after the 400 is a retry. (A periodic
        # heartbeat repeats the body too, but not within RESEND_WINDOW on any sane runner.)
        answered = refused.answered if refused.answered is not None else refused.arrived
        return (
            later.endpoint == refused.endpoint
            and later.body == refused.body
            and later.arrived - answered < RESEND_WINDOW
        )

    def rejected(self) -> None:
        cancelled = self.outcome.cancel_at is not None
        odd = [
            e
            for e in self.exchanges
            if e.status is not None
            and 400 <= e.status < 500
            and e.fault is None
            and e.token_expired_for is None  # the token check reports those
            and not (e.status == 409 and cancelled)
        ]
        if odd:
            codes = sorted({f"{e.status} {e.code}" for e in odd})
            self.add(
                "rejected", f"the server refused {len(odd)} request(s): {', '.join(codes)}", odd
            )

    # --- cancel, token, artifacts ------------------------------------------------------------

    def cancel(self) -> None:
        cancel_at = self.outcome.cancel_at
        if cancel_at is None:
            if self.outcome.cancel_requested:
                self.stats["cancel"] = {"at": None, "note": "not exercised: the run finished first"}
            return
        stop = self.outcome.exited_at - cancel_at
        self.stats["cancel"] = {"at": round(cancel_at, 2), "stoppedAfter": round(stop, 2)}
        told = [e for e in self.exchanges if e.status == 409 and e.delivered]
        if not told:
            if stop > self.outcome.stop_bound:
                self.add(
                    "cancel",
                    f"the runner took {stop:.1f}s to stop after the cancel "
                    f"(bound {self.outcome.stop_bound:.0f}s)",
                    [e for e in self.exchanges if e.arrived >= cancel_at][-1:],
                )
            return
        first = told[0]
        kept_on = [
            e
            for e in self.exchanges
            if e.endpoint == "status"
            and e.arrived > (first.answered or first.arrived)
            and (e.body or {}).get("status") != "cancelled"
        ]
        self.stats["cancel"]["statusAfter409"] = len(kept_on)
        if len(kept_on) > 1 or stop > self.outcome.stop_bound:
            self.add(
                "cancel",
                f"the runner learnt of the cancel (409 on request #{first.number}) but kept "
                f"working: {len(kept_on)} more status report(s), stopped {stop:.1f}s after the "
                f"cancel (bound {self.outcome.stop_bound:.0f}s)",
                [first, *kept_on],
            )

    def token(self) -> None:
        refreshes = [
            e for e in self.exchanges if e.endpoint == "token" and e.status == 200 and e.delivered
        ]
        expired = [e for e in self.exchanges if e.token_expired_for is not None]
        self.stats["token"] = {
            "ttl": self.outcome.token_ttl,
            "refreshed": len(refreshes),
            "tokensUsed": len({e.token_id for e in self.exchanges if e.token_id}),
            "expiredUses": len(expired),
        }
        if not expired:
            return
        message = (
            f"{len(expired)} request(s) carried an expired token (TTL {self.outcome.token_ttl}s); "
            + (
                "the runner never refreshed it"
                if not refreshes
                else f"{len(refreshes)} refresh(es) were not enough"
            )
        )
        folded = [f for f in self.findings if f.check in _CONSEQUENCES]
        if folded:
            message += "; as a result: " + "; ".join(f.message for f in folded)
            self.findings = [f for f in self.findings if f.check not in _CONSEQUENCES]
        self.add("token", message, expired)

    def artifacts(self) -> None:
        uploads = [e for e in self.exchanges if e.endpoint == "artifacts"]
        stored_keys = {a.key for a in self.state.artifacts if a.key}
        stored_names = {a.storage_key for a in self.state.artifacts}
        attempted: dict[str, Exchange] = {}
        for upload in uploads:
            identity = upload.artifact_key or upload.artifact_name or f"#{upload.number}"
            attempted.setdefault(identity, upload)
        missing = [
            upload
            for identity, upload in attempted.items()
            if identity not in stored_keys
            and not any(n == identity or n.endswith("/" + identity) for n in stored_names)
        ]
        declared = _count((_final_status_body(self.exchanges) or {}).get("artifactCount"))
        registered = len(self.state.artifacts)
        self.stats["artifacts"] = {
            "declared": declared,
            "attempted": len(attempted),
            "registered": registered,
        }
        if missing:
            self.add(
                "artifacts",
                f"{len(missing)} upload(s) never registered (the runner gave up on them)",
                missing,
            )
        elif declared is not None and registered < declared:
            self.add(
                "artifacts",
                f"the runner declared artifactCount {declared}, {registered} registered",
            )


def score(exchanges: list[Exchange], state: RunState, outcome: RunnerOutcome) -> Scorecard:
    """Run every check over the record; ``ok`` is True when there is no finding."""
    checker = _Checker(list(exchanges), state, outcome)
    checker.stats["requests"] = len(exchanges)
    checker.final_status()
    checker.process()
    checker.events()
    checker.faults()
    checker.rejected()
    checker.cancel()
    checker.artifacts()
    checker.token()  # last: it folds the findings it causes
    return Scorecard(not checker.findings, checker.findings, checker.stats)
