"""Event delivery for the runner client: batches sent from the queue's head, and the flusher.

``RunnerClient.event()`` only enqueues; this module sends. ``drain`` is called by whoever holds
the client's ``_send_lock`` (an explicit ``flush()``, or the background thread running
``flusher``): it posts batches from the head of the queue and removes them only once the server
has acknowledged them, so the order holds and a batch that exhausts its retries stays at the
head for the next flush. Split from client.py, which keeps the queue and the public methods.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from designrun.runner.wire import RunnerError, _Interrupted

if TYPE_CHECKING:
    from designrun.runner.client import RunnerClient

log = logging.getLogger("designrun.runner")


def drain(
    client: RunnerClient, *, upto: int | None, deadline: float | None, background: bool
) -> None:
    """Send batches from the head of the queue (caller holds _send_lock)."""
    while True:
        with client._cond:
            if not client._queue or (upto is not None and client._queue[0].number > upto):
                return
            size = 1 if client._single_left else client._batch_size
            batch = [client._queue[i] for i in range(min(size, len(client._queue)))]
        try:
            client._post(
                "events",
                json_body={"events": [e.wire for e in batch]},
                deadline=deadline,
                background=background,
            )
        except RunnerError as exc:
            if exc.status not in (400, 413):
                raise
            # The server refused the content. Resend the batch one event at a time; the
            # single event it still refuses is dropped, so that it cannot block the log.
            if len(batch) > 1:
                client._single_left = len(batch)
                continue
            log.error(
                "run %s: the server refused event %r and it is dropped: %s",
                client.run_id,
                batch[0].wire["eventType"],
                exc,
            )
        with client._cond:
            for _ in batch:
                client._queue.popleft()
        client._single_left = max(0, client._single_left - len(batch))


def flusher(client: RunnerClient) -> None:
    """The background thread: flush on batch_size, or flush_interval after an event."""
    failures = 0
    retry_at = 0.0
    while True:
        with client._cond:
            while True:
                if client._closing:
                    return
                if not client._queue or client._paused or client._flush_waiters:
                    client._cond.wait()
                    continue
                due = client._queue[0].enqueued_at + client._flush_interval
                if failures:
                    due = max(due, retry_at)
                elif len(client._queue) >= client._batch_size:
                    break
                remaining = due - time.monotonic()
                if remaining <= 0:
                    break
                client._cond.wait(remaining)
        with client._send_lock:
            try:
                drain(client, upto=None, deadline=None, background=True)
                failures = 0
            except _Interrupted:
                continue
            except RunnerError as exc:
                failures += 1
                if not exc.retryable:
                    # A 401/403/404 will not heal by itself: wait for an explicit flush().
                    with client._cond:
                        client._paused = True
                    log.error("run %s: events not sent, flusher paused: %s", client.run_id, exc)
                else:
                    log.warning("run %s: events not sent yet, will retry: %s", client.run_id, exc)
            except Exception:
                failures += 1
                log.exception("run %s: unexpected error in the event flusher", client.run_id)
            if failures:
                delay = max(client._flush_interval, client._backoff_base) * 2 ** min(failures, 30)
                retry_at = time.monotonic() + min(client._backoff_cap, delay)
