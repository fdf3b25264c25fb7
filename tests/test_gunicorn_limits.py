"""JSON body bounds under real gunicorn (issue 6 item 3, MAX_JSON_BYTES).

The body is never sent: a request that declares 1 GiB (or streams chunks without end) must be
answered 413 from its headers and the first bound's worth of bytes. If the worker tried to read
the whole body it would wait for bytes that never come, and the socket's timeout fails the test.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import pytest

from designrun.api import limits
from tests.servers import HOST, GunicornServer

pytestmark = pytest.mark.slow

GIB = 1024**3
WAIT = 20.0  # seconds a refusal may take on a busy machine before the test calls it a hang


@pytest.fixture
def server(tmp_path: Path, database_url: str):
    instance = tmp_path / "instance"
    env = {
        "DESIGNRUN_INSTANCE_PATH": str(instance),
        "RUNNER_AUTH_SECRET": secrets.token_urlsafe(32),
        "DATABASE_URL": database_url,
        "RUNNER_BACKEND": "none",
        "WEB_CONCURRENCY": "1",
    }
    with GunicornServer(env, tmp_path) as running:
        yield running


def _exchange(server: GunicornServer, head: bytes, body_start: bytes) -> bytes:
    """Send the headers and the start of a body, then read the answer (never sending more)."""
    with socket.create_connection((HOST, server.port), timeout=WAIT) as sock:
        sock.sendall(head + body_start)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_declared_1_gib_json_body_is_413_from_its_headers(server):
    head = (
        b"POST /api/auth/sign-in/email HTTP/1.1\r\n"
        b"Host: " + HOST.encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(GIB).encode() + b"\r\n\r\n"
    )
    answer = _exchange(server, head, b'{"email": "')
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_an_endless_chunked_json_body_is_413_after_its_bound(server):
    head = (
        b"POST /api/auth/sign-in/email HTTP/1.1\r\n"
        b"Host: " + HOST.encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    size = limits.AUTH_BODY_BYTES + 1024
    chunk = b"%x\r\n" % size + b'{"email": "' + b" " * (size - 11) + b"\r\n"
    answer = _exchange(server, head, chunk)  # no terminating 0-chunk: the body never ends
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize(
    "body",
    [
        b"[ffff\r\n",  # not a chunk size
        b"5\r\n[1,2,XXXX",  # a chunk without its terminating CRLF
    ],
)
def test_a_malformed_chunked_body_is_a_json_400_not_a_500(server, body):
    head = (
        b"POST /api/auth/sign-in/email HTTP/1.1\r\n"
        b"Host: " + HOST.encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    answer = _exchange(server, head, body)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"application/json" in answer.split(b"\r\n\r\n", 1)[0]


def test_a_chunked_body_cut_short_is_a_json_400(server):
    head = (
        b"POST /api/auth/sign-in/email HTTP/1.1\r\n"
        b"Host: " + HOST.encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection((HOST, server.port), timeout=WAIT) as sock:
        sock.sendall(head + b"40\r\n" + b'{"email": "a@example.com", ')
        sock.shutdown(socket.SHUT_WR)  # the client stops sending half way through a chunk
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
