"""Upload bodies read straight from gunicorn's socket (designrun/api/body.py).

The unit tests build gunicorn's own reader objects over a socket pair, as gunicorn does for a
request with a Content-Length; the slow ones send uploads to a real gunicorn: whole bodies,
a next request pipelined behind a body on the same connection, and a client that goes away
half way (nothing may be stored).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import time
import uuid
from pathlib import Path

import pytest
import requests
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.unreader import SocketUnreader

from designrun.api.body import _socket_reader
from designrun.auth import runner_tokens
from designrun.runner import RunnerClient
from designrun.storage.base import read_chunks
from tests.api.artifacts.support import LocalObjects
from tests.servers import HOST, GunicornServer, server_environment


def _gunicorn_body(sock: socket.socket, length: int, read_ahead: bytes = b"") -> Body:
    unreader = SocketUnreader(sock)
    unreader.buf.write(read_ahead)  # what gunicorn received together with the headers
    return Body(LengthReader(unreader, length))


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    with server, client:
        yield server, client


def test_reads_the_buffered_bytes_then_the_socket_and_stops_at_the_length(pair):
    server, client = pair
    body = _gunicorn_body(server, 10, read_ahead=b"abc")
    client.sendall(b"defghij" + b"GET /next HTTP/1.1\r\n")
    reader = _socket_reader({"wsgi.input": body, "gunicorn.socket": server})
    assert reader is not None
    assert b"".join(bytes(c) for c in read_chunks(reader, 4)) == b"abcdefghij"
    assert body.reader.length == 0  # gunicorn sees the body as read: keep-alive goes on
    assert body.read() == b""
    assert server.recv(100) == b"GET /next HTTP/1.1\r\n"  # the next request was never touched


def test_a_pipelined_request_read_with_the_headers_stays_in_gunicorn_s_buffer(pair):
    server, _ = pair
    body = _gunicorn_body(server, 5, read_ahead=b"12345GET / HTTP/1.1\r\n\r\n")
    reader = _socket_reader({"wsgi.input": body, "gunicorn.socket": server})
    assert reader is not None
    assert reader.read() == b"12345"
    assert reader.read() == b""
    assert body.reader.unreader.buf.getvalue() == b"GET / HTTP/1.1\r\n\r\n"


def test_a_client_that_goes_away_gives_a_short_body(pair):
    server, client = pair
    body = _gunicorn_body(server, 1000)
    client.sendall(b"only this")
    client.shutdown(socket.SHUT_WR)
    reader = _socket_reader({"wsgi.input": body, "gunicorn.socket": server})
    assert reader is not None
    assert reader.read(1000) == b"only this"
    assert reader.read(1000) == b""


def test_other_bodies_are_left_to_gunicorn_s_own_reader(pair):
    server, _ = pair
    chunked = Body(ChunkedReader(None, SocketUnreader(server)))
    assert _socket_reader({"wsgi.input": chunked, "gunicorn.socket": server}) is None
    started = _gunicorn_body(server, 10, read_ahead=b"0123456789")
    assert started.read(2) == b"01"  # the application already read through gunicorn
    assert _socket_reader({"wsgi.input": started, "gunicorn.socket": server}) is None
    assert _socket_reader({"wsgi.input": io.BytesIO(b"x"), "gunicorn.socket": server}) is None
    body = _gunicorn_body(server, 10)
    assert _socket_reader({"wsgi.input": body}) is None  # not gunicorn's socket


# --- under a real gunicorn ------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, database_url: str):
    env = server_environment(
        database_url,
        tmp_path,
        RUNNER_BACKEND="none",
        WEB_CONCURRENCY="1",
        MAX_UPLOAD_BYTES=str(64 * 1024 * 1024),
    )
    with GunicornServer(env, tmp_path) as server:
        token = requests.post(
            f"{server.url}/api/auth/sign-up/email",
            json={
                "email": f"socket-{uuid.uuid4().hex[:8]}@example.com",
                "password": "long enough 1",
            },
            timeout=30,
        ).json()["token"]
        user = {"Authorization": f"Bearer {token}"}
        run = requests.post(
            f"{server.url}/api/design/runs", json={"prompt": "p"}, headers=user, timeout=30
        ).json()["run"]
        yield server, user, run["id"], env, LocalObjects(env["STORAGE_LOCAL_DIR"])


def _runner(server: GunicornServer, run_id: str, env: dict[str, str], **kwargs) -> RunnerClient:
    token, _ = runner_tokens.mint(env["RUNNER_AUTH_SECRET"], uuid.UUID(run_id), 3600)
    return RunnerClient(f"{server.url}/api/runner/runs/{run_id}", token, **kwargs)


def _content(server: GunicornServer, user: dict[str, str], run_id: str, artifact_id: str) -> bytes:
    url = f"{server.url}/api/design/runs/{run_id}/artifacts/{artifact_id}/content"
    response = requests.get(url, headers=user, timeout=30)
    assert response.status_code == 200
    return response.content


@pytest.mark.slow
def test_multipart_and_direct_uploads_arrive_whole(served, tmp_path):
    server, user, run_id, env, _ = served
    data = os.urandom(5 * 1024 * 1024 + 123)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    for threshold in (None, 1):
        with _runner(server, run_id, env, direct_upload_threshold=threshold) as runner:
            answer = runner.upload_artifact(path, "archive")
        assert answer["sizeBytes"] == len(data)
        stored = _content(server, user, run_id, answer["artifactId"])
        assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()


def _ticket(server: GunicornServer, run_id: str, env: dict[str, str], size: int) -> dict:
    with _runner(server, run_id, env) as runner:
        return runner._post(
            "artifacts/uploads",
            json_body={
                "fileName": "a.bin",
                "contentType": "application/octet-stream",
                "sizeBytes": size,
            },
        )


def _request_head(url: str, length: int) -> bytes:
    path = url.split(str(HOST), 1)[1].split("/", 1)[1]
    return (
        f"PUT /{path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """The status lines of ``count`` answers on the connection."""
    data = b""
    deadline = time.monotonic() + 30
    while data.count(b"HTTP/1.1 ") < count and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return re.findall(rb"HTTP/1\.1 \d{3}[^\r]*", data)


@pytest.mark.slow
def test_a_request_pipelined_behind_an_upload_is_answered_too(served):
    server, _, run_id, env, objects = served
    body = os.urandom(300_000)
    ticket = _ticket(server, run_id, env, len(body))
    nxt = f"GET /livez HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    with socket.create_connection((HOST, server.port), timeout=30) as sock:
        sock.sendall(_request_head(ticket["uploadUrl"], len(body)) + body + nxt)
        assert _read_answers(sock, 2) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]
    assert objects.get(ticket["storageKey"]) == body


@pytest.mark.slow
def test_a_client_gone_half_way_leaves_nothing_stored(served):
    server, _, run_id, env, objects = served
    size = 4 * 1024 * 1024
    ticket = _ticket(server, run_id, env, size)
    with socket.create_connection((HOST, server.port), timeout=30) as sock:
        sock.sendall(_request_head(ticket["uploadUrl"], size) + os.urandom(size // 2))
        sock.shutdown(socket.SHUT_WR)
        _read_answers(sock, 1)  # the worker answers (400 size_mismatch) or just closes
    deadline = time.monotonic() + 10
    while objects.keys() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert objects.keys() == set()  # neither the object nor a temporary file
    assert requests.get(f"{server.url}/livez", timeout=10).status_code == 200
