"""designrun/gunicorn_worker.py: gthread with connections spread evenly over the workers.

- The share rule and the slot table, driven directly: a worker defers a new connection when
  one more would put it above ``ceil((total + 1) / workers)`` of the live workers; entries of
  dead workers are left out; slots of workers that are gone are reused; a worker defers one
  connection for at most MAX_DEFER.
- Under gunicorn (gunicorn.conf.py's default worker class): twelve kept-alive connections opened
  at once land four on each of three workers, give or take one.
"""

from __future__ import annotations

import gc
import http.client
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from designrun import gunicorn_worker
from designrun.gunicorn_worker import BalancedThreadWorker, claim_slot, over_share, publish
from tests.servers import GunicornServer, server_environment, worker_pids


@pytest.fixture
def table() -> Iterator[None]:
    """An empty slot table (the module's is the process's own here: nothing was forked)."""
    gunicorn_worker._TABLE[:] = bytes(len(gunicorn_worker._TABLE))
    gunicorn_worker._owners[:] = [None] * gunicorn_worker.SLOTS
    yield
    gunicorn_worker._TABLE[:] = bytes(len(gunicorn_worker._TABLE))
    gunicorn_worker._owners[:] = [None] * gunicorn_worker.SLOTS


@contextmanager
def _live_pids(count: int) -> Iterator[list[int]]:
    """Pids of processes that are alive while the block runs."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        for _ in range(count)
    ]
    try:
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class _Owner:
    pass


def test_slots_are_unique_and_reused_once_their_worker_is_gone(table):
    a, b = _Owner(), _Owner()
    first, second = claim_slot(a), claim_slot(b)
    assert first != second
    publish(first, 4242, 7)
    del a
    gc.collect()
    c = _Owner()
    assert claim_slot(c) == first  # the slot of the worker object the master dropped
    assert gunicorn_worker._ENTRY.unpack_from(gunicorn_worker._TABLE, 0) == (0, 0)  # cleared
    assert claim_slot(_Owner()) not in {first, second}
    del b, c


@pytest.mark.parametrize(
    ("mine", "others", "defer"),
    [
        (0, [], False),  # alone: always takes it
        (9, [], False),
        (4, [3, 3, 3, 3], True),  # 16 over 5: a fifth would give it 5 > ceil(17/5) = 4
        (3, [4, 3, 3, 3], False),  # a fourth keeps it at the share
        (3, [3, 3], False),
        (5, [2, 2], True),
        (2, [8, 8, 8], False),
    ],
)
def test_the_share_rule(table, mine, others, defer):
    owners = [_Owner() for _ in range(1 + len(others))]  # the master keeps its workers
    slots = [claim_slot(owner) for owner in owners]
    with _live_pids(len(others)) as pids:
        publish(slots[0], os.getpid(), mine)
        for slot, pid, count in zip(slots[1:], pids, others, strict=True):
            publish(slot, pid, count)
        assert over_share(slots[0], mine) is defer
    total, workers = mine + sum(others), 1 + len(others)
    assert defer == (mine + 1 > math.ceil((total + 1) / workers))


def test_dead_workers_are_left_out(table):
    owners = [_Owner() for _ in range(3)]
    slots = [claim_slot(owner) for owner in owners]
    with _live_pids(1) as (other,):
        publish(slots[0], os.getpid(), 3)
        publish(slots[1], other, 3)
        assert over_share(slots[0], 3) is False  # 6 over 2: a fourth stays within ceil(7/2)
        # A worker killed holding none: counted, a fourth would be over ceil(7/3) = 3.
        publish(slots[2], _dead_pid(), 0)
        assert over_share(slots[0], 3) is False


def test_without_a_slot_nothing_is_deferred(table):
    assert over_share(-1, 1000) is False


def test_a_connection_is_deferred_at_most_max_defer(monkeypatch):
    worker = BalancedThreadWorker.__new__(BalancedThreadWorker)
    worker.alive = True
    worker.slot = 0
    worker.nr_conns = 10
    worker._defer_started = 0.0
    worker._last_deferred = -1.0
    monkeypatch.setattr(gunicorn_worker, "over_share", lambda slot, conns: True)
    step = gunicorn_worker.PAUSE
    now = 100.0
    deferred = []
    while now < 100.0 + 2 * gunicorn_worker.MAX_DEFER:
        deferred.append(worker._defer(now))
        now += step
    assert deferred[0] is True
    assert deferred[-1] is False  # taken after MAX_DEFER, however loaded this worker is
    turns = deferred.index(False)
    assert abs(turns * step - gunicorn_worker.MAX_DEFER) <= 2 * step
    # A connection arriving later is a new one: deferred again, from the start.
    assert worker._defer(now + 1.0) is True
    monkeypatch.setattr(gunicorn_worker, "over_share", lambda slot, conns: False)
    assert worker._defer(now + 1.001) is False
    worker.alive = False  # a stopping worker takes nothing new anyway: never deferred
    monkeypatch.setattr(gunicorn_worker, "over_share", lambda slot, conns: True)
    assert worker._defer(now + 5.0) is False


# --- under gunicorn ------------------------------------------------------------------------------


def _established(port: int) -> dict[int, int]:
    """Socket inode -> 1 for the server side of every established TCP connection on ``port``."""
    inodes: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], int(fields[9])
        if state == "01" and int(local.split(":")[1], 16) == port:
            inodes[inode] = 1
    return inodes


def _connections_per_worker(master: int, port: int) -> Counter[int]:
    inodes = _established(port)
    per: Counter[int] = Counter()
    for pid in worker_pids(master):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                per[pid] += 1
    return per


def _wait_loaded(master: int, workers: int) -> None:
    """Until every worker has loaded the app (wsgi.py has started its background threads): a
    worker still importing accepts nothing, and the others only leave it MAX_DEFER."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = worker_pids(master)
        threads = [len(list(Path(f"/proc/{pid}/task").iterdir())) for pid in pids]
        if len(pids) == workers and min(threads) > 1:
            return
        time.sleep(0.05)
    raise AssertionError("the workers never finished booting")


@pytest.mark.slow
def test_kept_alive_connections_spread_over_the_workers(database_url, tmp_path):
    workers, clients = 3, 12
    env = server_environment(database_url, tmp_path, WEB_CONCURRENCY=str(workers))
    with GunicornServer(env, tmp_path) as server:
        assert server.process is not None
        assert "Using worker: designrun.gunicorn_worker.BalancedThreadWorker" in server.stderr()
        _wait_loaded(server.process.pid, workers)
        time.sleep(1.0)  # past the start-up work of the workers' background threads
        barrier = threading.Barrier(clients)
        connections: list[http.client.HTTPConnection] = []
        statuses: list[int] = []
        lock = threading.Lock()

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            barrier.wait()  # all at once, as a load generator's connections come
            conn.request("GET", "/livez")
            response = conn.getresponse()
            response.read()
            with lock:
                connections.append(conn)
                statuses.append(response.status)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        try:
            assert statuses == [200] * clients
            per = _connections_per_worker(server.process.pid, server.port)
            assert sum(per.values()) == clients
            assert max(per.values()) <= math.ceil(clients / workers) + 1, per
        finally:
            for conn in connections:
                conn.close()
