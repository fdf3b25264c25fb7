"""gunicorn's gthread worker, with connections spread evenly over the workers of a server.

gunicorn's workers all wait on the one listening socket, and a new connection goes to
whichever worker runs first: the one already on a core, usually one that is busy. Clients that
keep their connection (runners posting events, browsers, live streams) then stay where they
landed, and one worker of five could hold 8 of 16 connections. A worker uses at most one core
(the GIL), so its clients queued while other workers idled; on the 2-core bench machine the
single-event p99 followed the most loaded worker's share, from ~30 ms with 4 of 16 to ~50 ms
with 10 of 16 (bench/README.md).

Each worker publishes its number of open connections in a table shared by the workers of one
master (an anonymous shared mapping made when the master imports this module, inherited by
every fork). A worker that would hold more than its share after one more connection
(``ceil((total + 1) / workers)``) lets it go to another worker: it stops watching the listening
socket for a millisecond at a time. It does so for at most ``MAX_DEFER`` seconds per
connection, then takes that one (the next is deferred again), so a hung or dead worker that
looks idle never leaves connections unaccepted. Only the balance depends on the table: a stale
or wrong entry costs at most that delay, never a request.

Slots: the worker object is made in the master before the fork, which gives it a slot no live
worker holds; the forked worker writes its pid there, and entries whose pid is not alive are
left out of the sums.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import time
import weakref
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

SLOTS = 64  # workers of one master at a time (WEB_CONCURRENCY, plus replacements booting)
_ENTRY = struct.Struct("ii")  # pid, open connections
# Made in the master when gunicorn loads the worker class, before any fork: shared by all.
_TABLE = mmap.mmap(-1, SLOTS * _ENTRY.size)
_owners: list[weakref.ref[Any] | None] = [None] * SLOTS  # the master's bookkeeping

MAX_DEFER = 0.1  # seconds a worker leaves a new connection to less loaded ones, at most
PAUSE = 0.001  # seconds between two looks at the listening socket while deferring


def claim_slot(owner: object) -> int:
    """A slot no live worker object holds (in the master); its entry is cleared."""
    for slot, ref in enumerate(_owners):
        if ref is None or ref() is None:
            _owners[slot] = weakref.ref(owner)
            _ENTRY.pack_into(_TABLE, slot * _ENTRY.size, 0, 0)
            return slot
    return -1  # more workers than slots: this one is left out of the balance


def publish(slot: int, pid: int, connections: int) -> None:
    if slot >= 0:
        _ENTRY.pack_into(_TABLE, slot * _ENTRY.size, pid, connections)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def over_share(slot: int, connections: int) -> bool:
    """Would one more connection put this worker above its share of all the workers' ones?"""
    if slot < 0:
        return False
    total, workers = connections, 1
    for other, (pid, count) in enumerate(_ENTRY.iter_unpack(_TABLE)):
        if other != slot and pid > 0 and _alive(pid):
            total += count
            workers += 1
    return connections + 1 > math.ceil((total + 1) / workers)


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, leaving new connections to less loaded workers (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slot = claim_slot(self)  # in the master, before the fork
        self._paused_until = 0.0
        self._defer_started = 0.0
        self._last_deferred = -1.0

    def init_process(self) -> None:
        publish(self.slot, os.getpid(), 0)
        super().init_process()

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        publish(self.slot, os.getpid(), self.nr_conns)
        if self._paused_until:
            remaining = self._paused_until - time.monotonic()
            if remaining <= 0:
                self._paused_until = 0.0
                self.set_accept_enabled(self.nr_conns < self.worker_connections)
            else:
                timeout = min(timeout, remaining)
        super().wait_for_and_dispatch_events(timeout)

    def set_accept_enabled(self, enabled: bool) -> None:
        if enabled and self._paused_until:
            return  # deferring: the pause ends in wait_for_and_dispatch_events
        super().set_accept_enabled(enabled)

    def accept(self, listener: Any) -> None:
        if self._defer(time.monotonic()):
            super().set_accept_enabled(False)
            self._paused_until = time.monotonic() + PAUSE
            return
        super().accept(listener)
        self._last_deferred = -1.0  # the next connection gets its own MAX_DEFER
        publish(self.slot, os.getpid(), self.nr_conns)

    def _defer(self, now: float) -> bool:
        if not self.alive or not over_share(self.slot, self.nr_conns):
            return False
        if now - self._last_deferred > 10 * PAUSE:  # a new connection waiting, not the last one
            self._defer_started = now
        self._last_deferred = now
        return now - self._defer_started < MAX_DEFER
