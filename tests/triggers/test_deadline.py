"""TRIGGER_TIMEOUT bounds a whole job-request attempt, not each read (issue 6 item 4).

A job service that trickles its answer one byte at a time never lets a socket read time out;
the attempt must still end within TRIGGER_TIMEOUT, inside the dispatcher's lease, so that no
other process sends the same job while this one is still waiting.
"""

from __future__ import annotations

import socket
import threading
import time

from designrun.triggers import dispatcher
from tests.triggers.support import create_run, get_run, user_session


class Trickler:
    """Accepts a request, then sends a status line one byte every 0.2 s, forever."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                if self.stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)


def test_a_trickling_job_service_is_cut_off_at_the_deadline_and_sent_once(app_factory):
    slow = Trickler()
    try:
        app = app_factory(
            DAYTONA_API_URL=f"http://127.0.0.1:{slow.port}",
            TRIGGER_TIMEOUT=1,
            TRIGGER_MAX_ATTEMPTS=1,
        )
        client, token = user_session(app)
        run = create_run(client, token)
        started = time.monotonic()
        dispatcher.run_once(app)
        elapsed = time.monotonic() - started
        stored = get_run(client, token, run["id"])
        assert stored["status"] == "failed" and "within 1s" in stored["error"], stored
        # well inside the lease (TRIGGER_TIMEOUT + LEASE_MARGIN): nobody else could resend it
        assert elapsed < 1 + dispatcher.LEASE_MARGIN, elapsed
        assert slow.requests == 1
    finally:
        slow.stop.set()
        slow.sock.close()
