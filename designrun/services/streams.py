"""Live tail (API.md Part 2 § Live tail): one waiter per process wakes the open event streams.

The stream is a reader, never a writer. Each serving process has one ``Waiter`` thread that learns
from the database which runs changed and hands the new rows to the streams of those runs:

- PostgreSQL: ``LISTEN designrun_stream`` on a dedicated connection. Triggers (migration 0005)
  ``NOTIFY`` with the run id when events are inserted or a run's status/progress changes, so an
  event written through any worker or host reaches every process at once. A slow poll
  (``SAFETY_POLL``) catches anything missed while the connection was being re-established.
- SQLite: one cheap shared poll, every ``STREAM_POLL_INTERVAL`` seconds, of ``PRAGMA
  data_version`` (it changes when any other connection, in any process, commits). Only when it
  changed does the waiter ask, in one query for all watched runs, for their highest sequence and
  their ``updated_at``. Never one query per stream per tick.

The waiter fetches a changed run's new events once and hands the same list to every stream of
that run; each stream keeps its own cursor (the last sequence it sent), skips what it already
sent, and reads a gap from the database itself (it joined late, or fell too far behind). So a
line is never lost or repeated, and a stream resumed with ``Last-Event-ID`` continues exactly
after it. Nothing here touches the ingestion hot path: the writers do not know streams exist.

Each process holds at most ``STREAM_MAX_PER_PROCESS`` streams (a stream holds a worker thread:
docs/architecture.md § Streams); one more is ``StreamsFullError`` (503 + Retry-After).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, undefer

from designrun.errors import StreamsFullError
from designrun.models import Run, RunEvent, RunStatus

log = logging.getLogger(__name__)

_EXTENSION = "designrun.streams"
CHANNEL = "designrun_stream"
PAGE = 500  # events read per query (catch-up and hand-over)
CHUNK = 500  # run ids per IN (...) list
SAFETY_POLL = 5.0  # PostgreSQL: seconds between polls that back up LISTEN/NOTIFY
MAX_BACKLOG = 256  # hand-overs queued for one slow stream before it re-reads from the database
RETRY_AFTER = 5


@dataclass(frozen=True)
class Ping:
    """Nothing happened for a while: the view writes a ``: ping`` comment."""


@dataclass(frozen=True)
class End:
    """The run is terminal and every event up to now was sent: the last item of a stream."""

    status: str


Item = RunEvent | Run | Ping | End
_RunKey = tuple[str, float, Any]


def _key(run: Run | None) -> _RunKey | None:
    return None if run is None else (run.status, run.progress, run.updated_at)


class Subscription:
    """One open stream's mailbox: the waiter pushes, the stream drains (see ``follow``)."""

    def __init__(self, run_id: uuid.UUID) -> None:
        self.run_id = run_id
        self.wake = threading.Event()
        self.items: deque[tuple[str, Any]] = deque()
        self.overflow = False

    def push(self, kind: str, payload: Any) -> None:
        # Called with the waiter's lock held. A stream that cannot keep up (a slow client) does
        # not make the process hold an ever longer backlog: it is told to re-read instead.
        if len(self.items) >= MAX_BACKLOG:
            self.items.clear()
            self.overflow = True
        else:
            self.items.append((kind, payload))
        self.wake.set()


class Waiter:
    """This process's one reader of "what changed" for every open stream (module docstring)."""

    def __init__(self, app: Flask, engine: Engine) -> None:
        self.engine = engine
        self.limit = int(app.config["STREAM_MAX_PER_PROCESS"])
        self.poll_interval = float(app.config["STREAM_POLL_INTERVAL"])
        self.ping_interval = float(app.config["STREAM_PING_INTERVAL"])
        self.lock = threading.Lock()
        self.subs: dict[uuid.UUID, set[Subscription]] = {}
        self.known_seq: dict[uuid.UUID, int] = {}
        self.known_run: dict[uuid.UUID, _RunKey | None] = {}
        self.dirty: set[uuid.UUID] = set()
        self.kick = threading.Event()
        self.stopping = threading.Event()
        self.open = 0
        self.thread: threading.Thread | None = None

    # --- slots and subscriptions (called by streams) ---------------------------------------

    def acquire(self) -> None:
        """Take one of this process's stream slots; raises StreamsFullError when none is free."""
        with self.lock:
            if self.open >= self.limit or self.stopping.is_set():
                raise StreamsFullError(RETRY_AFTER)
            self.open += 1

    def release(self) -> None:
        """Give a slot back (a stream ended, or its client went away)."""
        with self.lock:
            self.open = max(0, self.open - 1)

    def subscribe(self, run_id: uuid.UUID, after: int) -> Subscription:
        """Watch ``run_id``: new events after ``after`` and run changes are pushed to the result."""
        sub = Subscription(run_id)
        with self.lock:
            self.subs.setdefault(run_id, set()).add(sub)
            known = self.known_seq.get(run_id)
            # Fetch from the lowest cursor of the run's streams next time: whatever was committed
            # after this stream's own catch-up query is handed over (the others skip repeats).
            self.known_seq[run_id] = after if known is None else min(known, after)
            # ... and hand every stream of the run a fresh snapshot (each skips an unchanged one).
            self.known_run.pop(run_id, None)
            self.dirty.add(run_id)
            self._ensure_thread()
        self.kick.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop watching for ``sub``; forget the run when it was its last stream."""
        with self.lock:
            subs = self.subs.get(sub.run_id)
            if subs is None:
                return
            subs.discard(sub)
            if not subs:
                del self.subs[sub.run_id]
                self.known_seq.pop(sub.run_id, None)
                self.known_run.pop(sub.run_id, None)
                self.dirty.discard(sub.run_id)

    def stop(self) -> None:
        """End every open stream of this process (clients reconnect elsewhere) and the thread."""
        self.stopping.set()
        self.kick.set()
        with self.lock:
            for subs in self.subs.values():
                for sub in subs:
                    sub.wake.set()

    # --- the thread ------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="dr-streams", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.engine.dialect.name == "postgresql":
                    self._listen()
                else:
                    self._poll()
            except Exception:
                # The database went away (restart, failover) or a pass failed: streams stay
                # open and are caught up as soon as a pass succeeds again.
                log.exception("stream waiter: pass failed, retrying in 1 s")
                self.stopping.wait(1.0)

    def _take_dirty(self, everything: bool) -> set[uuid.UUID]:
        with self.lock:
            targets = set(self.subs) if everything else self.dirty & set(self.subs)
            self.dirty.clear()
        return targets

    def _poll(self) -> None:
        raw = self.engine.raw_connection()
        try:
            sqlite = raw.driver_connection
            version = None
            while not self.stopping.is_set():
                self.kick.wait(self.poll_interval)
                self.kick.clear()
                # A connection outside any transaction; the number changes with every commit of
                # any other connection to the file, in this process or another.
                current = sqlite.execute("PRAGMA data_version").fetchone()[0]  # type: ignore[union-attr]
                targets = self._take_dirty(everything=current != version)
                version = current
                if targets:
                    self._refresh(targets)
        finally:
            raw.close()

    def _listen(self) -> None:
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            # Anything committed while not listening (start, reconnect) is caught up now.
            self._refresh(self._take_dirty(everything=True))
            next_poll = time.monotonic() + SAFETY_POLL
            while not self.stopping.is_set():
                notified: set[uuid.UUID] = set()
                # Short waits on the socket (no query): a new stream's kick is seen quickly.
                for note in conn.notifies(timeout=0.1, stop_after=1):
                    notified.add(_payload_run(note.payload))
                if notified:
                    # Drain what else already arrived, to serve them in one pass.
                    for note in conn.notifies(timeout=0.0):
                        notified.add(_payload_run(note.payload))
                everything = time.monotonic() >= next_poll
                if everything:
                    next_poll = time.monotonic() + SAFETY_POLL
                self.kick.clear()
                targets = self._take_dirty(everything)
                with self.lock:
                    targets |= notified & set(self.subs)
                if targets:
                    self._refresh(targets)

    def _refresh(self, targets: set[uuid.UUID]) -> None:
        """Hand each target run's new events and changed snapshot to its streams."""
        ids = sorted(targets)
        with Session(self.engine) as session:
            tops: dict[uuid.UUID, int] = {}
            heads: dict[uuid.UUID, _RunKey] = {}
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                for run_id, top in session.execute(
                    select(RunEvent.run_id, func.max(RunEvent.sequence))
                    .where(RunEvent.run_id.in_(chunk))
                    .group_by(RunEvent.run_id)
                ):
                    tops[run_id] = top
                for run_id, status, progress, updated in session.execute(
                    select(Run.id, Run.status, Run.progress, Run.updated_at).where(
                        Run.id.in_(chunk)
                    )
                ):
                    heads[run_id] = (status, progress, updated)
            for run_id in ids:
                self._refresh_run(session, run_id, tops.get(run_id, 0), heads.get(run_id))

    def _refresh_run(
        self, session: Session, run_id: uuid.UUID, top: int, head: _RunKey | None
    ) -> None:
        with self.lock:
            if run_id not in self.subs:
                return
            known = self.known_seq.get(run_id, top)
            known_head = self.known_run.get(run_id, ())
        if top > known:
            events = _events_after(session, run_id, known)
            if events:
                with self.lock:
                    for sub in self.subs.get(run_id, ()):
                        sub.push("events", events)
                    # Unless a new stream lowered it meanwhile (then it is dirty: read again).
                    if self.known_seq.get(run_id) == known:
                        self.known_seq[run_id] = events[-1].sequence
                    if events[-1].sequence < top:
                        self.dirty.add(run_id)
                        self.kick.set()
        if head != known_head:
            run = _get_run(session, run_id) if head is not None else None
            with self.lock:
                for sub in self.subs.get(run_id, ()):
                    sub.push("run", run)
                self.known_run[run_id] = head


def _payload_run(payload: str) -> uuid.UUID:
    try:
        return uuid.UUID(payload)
    except ValueError:
        return uuid.UUID(int=0)


def _events_after(session: Session, run_id: uuid.UUID, after: int) -> list[RunEvent]:
    query = (
        select(RunEvent)
        .where(RunEvent.run_id == run_id, RunEvent.sequence > after)
        .order_by(RunEvent.sequence)
        .limit(PAGE)
    )
    return list(session.scalars(query))


_WAITERS: weakref.WeakSet[Waiter] = weakref.WeakSet()


def waiter_for(app: Flask) -> Waiter:
    """This process's waiter for ``app`` (created on first use; its thread on first stream)."""
    waiter: Waiter | None = app.extensions.get(_EXTENSION)
    if waiter is None:
        from designrun.extensions import db

        with app.app_context():
            engine = db.engine
        waiter = app.extensions.setdefault(_EXTENSION, Waiter(app, engine))
        _WAITERS.add(waiter)
    return waiter


def stop_all() -> None:
    """End every open stream of this process (gunicorn.conf.py calls it when a worker stops).

    Without it a graceful restart would wait ``graceful_timeout`` for streams that never end;
    their clients reconnect with Last-Event-ID and resume on another worker.
    """
    for waiter in list(_WAITERS):
        waiter.stop()


def stop(app: Flask, wait: bool = False) -> None:
    """End this process's open streams (server shutting down; clients reconnect elsewhere)."""
    waiter: Waiter | None = app.extensions.get(_EXTENSION)
    if waiter is not None:
        waiter.stop()
        if wait and waiter.thread is not None:
            waiter.thread.join(timeout=5)


class Stream:
    """An open stream: iterate for batches of items; ``close()`` frees its slot.

    A class rather than a bare generator: the WSGI server calls ``close()`` even when the body
    was never iterated (the client left at once), and the slot must come back then too.
    """

    def __init__(self, waiter: Waiter, run_id: uuid.UUID, after: int) -> None:
        self.waiter = waiter
        self._items = _follow(waiter, run_id, after)
        self._closed = False

    def __iter__(self) -> Iterator[list[Item]]:
        return self

    def __next__(self) -> list[Item]:
        return next(self._items)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._items.close()
        finally:
            self.waiter.release()


def open_stream(app: Flask, account_id: uuid.UUID, run_id: uuid.UUID, after: int) -> Stream:
    """Open a live tail of the account's run after sequence ``after``.

    Raises RunNotFoundError (missing or foreign run) and StreamsFullError (503: this process
    holds STREAM_MAX_PER_PROCESS streams) before anything is sent. API.md Part 2 § Live tail.
    """
    from designrun.services.runs import get_run

    get_run(account_id, run_id)
    waiter = waiter_for(app)
    waiter.acquire()
    return Stream(waiter, run_id, after)


def _catch_up(engine: Engine, run_id: uuid.UUID, after: int) -> Iterator[list[RunEvent]]:
    """Pages of the run's stored events after ``after``, read in short transactions."""
    while True:
        with Session(engine) as session:
            page = _events_after(session, run_id, after)
        if not page:
            return
        yield page
        after = page[-1].sequence
        if len(page) < PAGE:
            return


def _get_run(session: Session, run_id: uuid.UUID) -> Run | None:
    # eventCount is a deferred column: load it now, the Run is read after the session closes.
    return session.get(Run, run_id, options=[undefer(Run.event_count)])  # type: ignore[attr-defined]


def _load_run(engine: Engine, run_id: uuid.UUID) -> Run | None:
    with Session(engine) as session:
        return _get_run(session, run_id)


def _follow(waiter: Waiter, run_id: uuid.UUID, after: int) -> Generator[list[Item], None, None]:
    engine = waiter.engine
    sent = after
    sub: Subscription | None = None
    last_ping = time.monotonic()

    def unsent(events: Sequence[RunEvent]) -> list[Item]:
        nonlocal sent
        out: list[Item] = []
        for event in events:
            if event.sequence > sent:
                out.append(event)
                sent = event.sequence
        return out

    def finish(status: str) -> Iterator[list[Item]]:
        # Terminal: whatever was committed before the final status is sent, then ``end``.
        for page in _catch_up(engine, run_id, sent):
            yield unsent(page)
        yield [End(status)]

    try:
        run = _load_run(engine, run_id)
        if run is None:
            return
        shown = _key(run)
        yield [run]
        for page in _catch_up(engine, run_id, sent):
            yield unsent(page)
        if RunStatus(run.status).terminal:
            yield from finish(run.status)
            return
        sub = waiter.subscribe(run_id, sent)
        while not waiter.stopping.is_set():
            woke = sub.wake.wait(max(0.0, last_ping + waiter.ping_interval - time.monotonic()))
            if waiter.stopping.is_set():
                return
            batch: list[Item] = []
            if woke:
                with waiter.lock:
                    sub.wake.clear()
                    items = list(sub.items)
                    sub.items.clear()
                    overflow, sub.overflow = sub.overflow, False
                if overflow:
                    items = [("events", []), ("run", _load_run(engine, run_id))]
                for kind, payload in items:
                    if kind == "events":
                        if overflow or (payload and payload[0].sequence > sent + 1):
                            for page in _catch_up(engine, run_id, sent):  # a gap: read it
                                batch += unsent(page)
                        batch += unsent(payload)
                        continue
                    if payload is None:  # the run was deleted
                        if batch:
                            yield batch
                        return
                    if _key(payload)[:2] != shown[:2]:  # type: ignore[index]
                        batch.append(payload)
                    shown = _key(payload)
                    if RunStatus(payload.status).terminal:
                        if batch:
                            yield batch
                        yield from finish(payload.status)
                        return
            if time.monotonic() >= last_ping + waiter.ping_interval:
                batch.append(Ping())
                last_ping = time.monotonic()
            if batch:
                yield batch
    finally:
        if sub is not None:
            waiter.unsubscribe(sub)


def recent_events(
    account_id: uuid.UUID, run_id: uuid.UUID, limit: int
) -> tuple[list[RunEvent], bool]:
    """The account's run's last ``limit`` events (ascending) and whether earlier ones exist.

    What a page renders before it opens the live tail: the newest end of the log, read through
    the ``(run_id, sequence)`` index whatever the log's length. Raises RunNotFoundError.
    """
    from designrun.extensions import db
    from designrun.services.runs import get_run

    get_run(account_id, run_id)
    query = (
        select(RunEvent)
        .where(RunEvent.run_id == run_id)
        .order_by(RunEvent.sequence.desc())
        .limit(limit + 1)
    )
    newest = list(db.session.scalars(query))
    earlier = len(newest) > limit
    return list(reversed(newest[:limit])), earlier
