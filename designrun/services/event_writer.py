"""The host's event writer: one process commits the event appends of every gunicorn worker.

SQLite takes one writer at a time. With each worker committing its own requests (the
in-process group commit, event_store.py ``_GroupCommit``), five workers hand the write lock
(``flock``) to each other hundreds of times a second: the kernel wakes every waiter and the
first to run wins, and a holder whose thread waits for its process's GIL, or whose process is
preempted, keeps all the others waiting. On a busy 2-core host that made the tail of
single-event latency (p99) several times the median (bench/README.md).

Under gunicorn, the master therefore starts one writer process per SQLite file
(``Supervisor``, from gunicorn.conf.py): a single thread that reads the workers' appends from
a Unix socket next to the database, commits everything that has arrived in one transaction
(``commit_jobs``, the same code as the in-process path, under the same ``flock``) and answers
each request after the COMMIT. Every request is in the next commit after its arrival.

The workers (``append``) send ``[run id, prepared events]`` and wait for the answer. Without
a writer (the Flask test client, ``flask run``, a writer being restarted, the setting off) they
fall back to the in-process group commit; both take the same file lock, so the two paths can
run side by side. A request whose writer dies before answering is answered 503 (its events may
or may not be stored; the runner's retry with the same idempotency keys settles it).

Wire format (a 4-byte big-endian length, then JSON), request: ``[run_hex, [[id_hex, type,
message, metadata_json, key], ...]]``; answer: ``{"ids": [...], "status": s}``, ``{"error":
"not_found"}`` or ``{"error": "unavailable", "detail": "..."}``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from designrun.database import SqliteWriter, sqlite_file
from designrun.errors import DatabaseUnavailableError, RunNotFoundError

log = logging.getLogger(__name__)

SOCKET_SUFFIX = ".events.sock"
# sun_path holds 108 bytes on Linux: a longer path gets no writer (the in-process path).
_MAX_SOCKET_PATH = 100
# How long a worker waits for its answer: longer than SQLite's busy timeout (30 s).
ANSWER_TIMEOUT = 45.0
# After a failed connect, a process tries the writer again after this long.
RETRY_AFTER = 1.0
_HEADER = 4
_MAX_FRAME = 64 * 1024 * 1024


def database_of(url: str) -> str | None:
    """The SQLite file a database URL names, or None (another database, or in memory)."""
    from sqlalchemy.engine import make_url

    return sqlite_file(make_url(url))


def socket_path(database: str) -> str | None:
    """The writer's socket for the SQLite file ``database``, or None (path too long)."""
    path = os.path.abspath(database) + SOCKET_SUFFIX
    return path if len(path.encode()) <= _MAX_SOCKET_PATH else None


def enabled() -> bool:
    """DESIGNRUN_SQLITE_EVENT_WRITER: 1 (default) or 0 (every worker commits its own)."""
    return os.environ.get("DESIGNRUN_SQLITE_EVENT_WRITER", "1").strip() not in {"0", "false", "no"}


def _frame(payload: Any) -> bytes:
    data = json.dumps(payload, separators=(",", ":")).encode()
    return len(data).to_bytes(_HEADER, "big") + data


# --- the workers' side ---------------------------------------------------------------------------


class _Client:
    """A worker process's connections to the writer of one database: one per thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.local = threading.local()
        self.retry_at = 0.0
        self.open: set[socket.socket] = set()  # every thread's, for ``close``

    def _connect(self) -> socket.socket | None:
        if time.monotonic() < self.retry_at:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError:  # no writer (yet, or any more): the in-process path
            sock.close()
            self.retry_at = time.monotonic() + RETRY_AFTER
            return None
        sock.settimeout(ANSWER_TIMEOUT)
        self.local.sock = sock
        self.open.add(sock)
        return sock

    def _drop(self, sock: socket.socket) -> None:
        self.open.discard(sock)
        sock.close()
        self.local.sock = None

    def close(self) -> None:
        for sock in list(self.open):
            sock.close()
        self.open.clear()

    def call(self, request: bytes) -> dict[str, Any] | None:
        """The writer's answer to ``request``, or None when no writer took it."""
        sock = getattr(self.local, "sock", None) or self._connect()
        if sock is None:
            return None
        try:
            sock.sendall(request)
        except OSError:
            # A writer that went away since the last request (restarted): over a Unix socket
            # the send fails at once and nothing reached it. One new connection, then give up.
            self._drop(sock)
            sock = self._connect()
            if sock is None:
                return None
            try:
                sock.sendall(request)
            except OSError:
                self._drop(sock)
                return None
        try:
            return _read_answer(sock)
        except (OSError, ValueError) as exc:
            # Sent but not answered: the writer died or hung. Stored or not, we cannot tell.
            self._drop(sock)
            raise DatabaseUnavailableError(f"event writer: {exc or type(exc).__name__}") from exc


def _read_answer(sock: socket.socket) -> dict[str, Any]:
    header = _recv_exactly(sock, _HEADER)
    answer = json.loads(_recv_exactly(sock, int.from_bytes(header, "big")))
    if not isinstance(answer, dict):
        raise ValueError("malformed answer")
    return answer


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        piece = sock.recv(size - len(data))
        if not piece:
            raise ConnectionResetError("the event writer closed the connection")
        data += piece
    return bytes(data)


_clients: dict[str, _Client] = {}
_clients_pid = os.getpid()
_clients_lock = threading.Lock()


def forget_clients() -> None:
    """Close this process's connections to writers (tests; a worker's are closed at exit)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def _client(database: str) -> _Client | None:
    global _clients_pid
    client = _clients.get(database)
    if client is not None and _clients_pid == os.getpid():
        return client
    with _clients_lock:
        if _clients_pid != os.getpid():
            _clients.clear()  # a forked child never shares its parent's sockets
            _clients_pid = os.getpid()
        client = _clients.get(database)
        if client is None:
            path = socket_path(database)
            if path is None or not enabled():
                return None
            client = _clients[database] = _Client(path)
        return client


def append(
    database: str, run_id: uuid.UUID, prepared: list[tuple[Any, ...]]
) -> tuple[list[uuid.UUID], str] | None:
    """Store prepared events through the host's writer: (ids, run status), or None (no writer).

    Raises RunNotFoundError (nothing stored) or DatabaseUnavailableError (the writer could not
    commit, or went away before answering).
    """
    client = _client(database)
    if client is None:
        return None
    request = _frame([run_id.hex, [[e[0].hex, e[1], e[2], e[3], e[4]] for e in prepared]])
    answer = client.call(request)
    if answer is None:
        return None
    error = answer.get("error")
    if error == "not_found":
        raise RunNotFoundError()
    if error is not None:
        raise DatabaseUnavailableError(f"event writer: {answer.get('detail', error)}")
    return [uuid.UUID(hex=i) for i in answer["ids"]], answer["status"]


# --- the writer process --------------------------------------------------------------------------


def _job_of(frame: bytes) -> Any:
    """A request's job; ValueError when it is not what ``append`` sends (nothing is stored)."""
    from designrun.services.event_store import _Job

    try:
        run, events = json.loads(frame)
        prepared = [
            (uuid.UUID(hex=i), t, m, d, k)
            for i, t, m, d, k in events
            if isinstance(t, str) and isinstance(d, str) and _text(m) and _text(k)
        ]
        job = _Job(uuid.UUID(hex=run), prepared)
    except (TypeError, AttributeError) as exc:
        raise ValueError(str(exc)) from exc
    if len(prepared) != len(events) or not prepared:
        raise ValueError("malformed events")
    return job


def _text(value: Any) -> bool:
    return value is None or isinstance(value, str)


class _Writer:
    """The writer's loop: accept workers, read whole requests, commit what arrived, answer."""

    def __init__(self, database: str, path: str) -> None:
        self.database = database
        self.path = path
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        # recv() would allocate (and map) a buffer of the size asked for on every call.
        self.scratch = bytearray(1 << 20)
        self.scratch_view = memoryview(self.scratch)
        self.listener = _listen(path)
        self.inode = os.stat(path).st_ino
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.writer = SqliteWriter(database)

    def run(self, parent: int | None) -> None:
        while not self.stopping:
            if parent is not None and os.getppid() != parent:
                log.warning("event writer: the gunicorn master is gone; exiting")
                break
            self.step(timeout=1.0)
        self.close()

    def step(self, timeout: float | None) -> int:
        """One turn: read what is ready, commit it, answer. The number of requests handled."""
        received: list[tuple[socket.socket, bytes]] = []
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                self._accept()
            else:
                self._read(key.fileobj, key.data, received)  # type: ignore[arg-type]
        if received:
            self._commit(received)
        return len(received)

    def _accept(self) -> None:
        while True:  # every worker thread that connected since the last turn
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setblocking(False)
            self.selector.register(conn, selectors.EVENT_READ, bytearray())

    def _read(
        self, conn: socket.socket, buf: bytearray, out: list[tuple[socket.socket, bytes]]
    ) -> None:
        try:
            size = conn.recv_into(self.scratch)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            size = 0
        if not size:
            self._close(conn)
            return
        buf += self.scratch_view[:size]
        while len(buf) >= _HEADER:
            size = int.from_bytes(buf[:_HEADER], "big")
            if size > _MAX_FRAME:
                self._close(conn)
                return
            if len(buf) < _HEADER + size:
                break
            out.append((conn, bytes(buf[_HEADER : _HEADER + size])))
            del buf[: _HEADER + size]

    def _close(self, conn: socket.socket) -> None:
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _commit(self, received: list[tuple[socket.socket, bytes]]) -> None:
        from designrun.services.event_store import commit_jobs

        jobs: list[tuple[socket.socket, Any]] = []
        for conn, frame in received:
            try:
                jobs.append((conn, _job_of(frame)))
            except ValueError as exc:
                self._answer(conn, {"error": "unavailable", "detail": f"bad request: {exc}"})
        batch = [job for _, job in jobs]
        failure: BaseException | None = None
        if batch:
            try:
                with self.writer.locked():
                    commit_jobs(self.writer, batch)
            except Exception as exc:  # the whole group failed: nothing of it was stored
                log.warning("event writer: commit failed: %s", exc)
                failure = exc
        for conn, job in jobs:
            if failure is not None:
                self._answer(conn, {"error": "unavailable", "detail": str(failure)})
            elif isinstance(job.error, RunNotFoundError):
                self._answer(conn, {"error": "not_found"})
            elif job.error is not None:
                self._answer(conn, {"error": "unavailable", "detail": str(job.error)})
            else:
                self._answer(conn, {"ids": [i.hex for i in job.ids], "status": job.status})

    def _answer(self, conn: socket.socket, answer: dict[str, Any]) -> None:
        # Non-blocking: a worker that stops reading must not stall every other. An answer (at
        # most 1,000 ids, ~35 KB) fits the socket's buffer, and a worker has one request out.
        try:
            conn.sendall(_frame(answer))
        except (BlockingIOError, OSError):  # a worker that stopped reading (or went away)
            self._close(conn)

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            if key.data is not None:
                key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()
        self.listener.close()
        try:  # not a socket another writer has put there since
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass


def _listen(path: str) -> socket.socket:
    """Bind the writer's socket, readable and writable by this user only."""
    try:
        os.unlink(path)  # a dead writer's, or a live one's of an older master: ours from now
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(512)
    listener.setblocking(False)
    return listener


def main(argv: list[str] | None = None) -> int:
    """``python -m designrun.services.event_writer DATABASE [PARENT_PID]``."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m designrun.services.event_writer DATABASE [PARENT_PID]")  # noqa: T201
        return 2
    database = args[0]
    parent = int(args[1]) if len(args) > 1 else None
    path = socket_path(database)
    if path is None:
        print(f"event writer: socket path for {database} is too long", file=sys.stderr)  # noqa: T201
        return 2
    from designrun import observability

    observability.configure_logging()  # LOG_FORMAT, like the workers' lines
    writer = _Writer(database, path)
    # What is loaded now lives as long as the process: out of the collector's way, so that a
    # full collection never pauses every worker's events for long (gunicorn.conf.py does the
    # same in the workers).
    gc.collect()
    gc.freeze()
    log.info("committing the events of %s (socket %s)", database, path)

    def stop(signum: int, frame: Any) -> None:
        writer.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    writer.run(parent)
    return 0


# --- the master's side ---------------------------------------------------------------------------


class Supervisor:
    """Runs the writer process for one database and starts it again when it dies."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="dr-event-writer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # This interpreter and module; the database is the server's own configuration.
        return subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "designrun.services.event_writer",
                self.database,
                str(os.getpid()),
            ],
        )

    def _loop(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            self.proc = self._spawn()
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            log.warning("event writer exited with %s; starting it again", code)
            # A writer that cannot even start is not restarted in a tight loop.
            self.stopping.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        remove_stale_socket(self.database)


def remove_stale_socket(database: str) -> None:
    """Remove the socket a writer killed (or stopped before it was up) left behind.

    Only when nothing answers on it: a newer master's writer may own the path by now.
    """
    path = socket_path(database)
    if path is None:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        try:
            os.unlink(path)
        except OSError:
            pass
    except OSError:
        pass  # not there (the usual case)
    finally:
        probe.close()


if __name__ == "__main__":
    sys.exit(main())
