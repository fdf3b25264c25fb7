"""JSON body bounds (API.md Part 2 "Artifacts at any size": MAX_JSON_BYTES; issue 6 item 3).

Every JSON body is bounded before it is read: a declared ``Content-Length`` over the endpoint's
bound is refused without reading a byte, and a body without one (chunked) is read only up to the
bound. /api/auth/* takes a few KiB, event batches up to MAX_JSON_BYTES (default 32 MiB), other
JSON endpoints 1 MiB (docs/api-decisions.md says why). Multipart uploads keep MAX_UPLOAD_BYTES.
"""

from __future__ import annotations

import io
import json

import pytest

from designrun.api import limits
from tests.api.test_audit import assert_error_envelope
from tests.factories import bearer, make_run, make_user, runner_headers, sign_in

GIB = 1024**3


class FakeBody(io.RawIOBase):
    """A body the test client cannot measure (it seeks to the end to count a stream's bytes):
    the length is declared by the test, through the environ."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0


class UnreadableBody(FakeBody):
    """A request body that must never be read: records how many bytes were asked for."""

    def __init__(self) -> None:
        self.asked = 0

    def readinto(self, buffer) -> int:
        self.asked += len(buffer)
        buffer[: len(buffer)] = b" " * len(buffer)
        return len(buffer)


class CountingBody(FakeBody):
    """An endless body (spaces after a JSON prefix) that counts the bytes handed out."""

    def __init__(self, prefix: bytes = b"") -> None:
        self.prefix = prefix
        self.given = 0

    def readinto(self, buffer) -> int:
        size = len(buffer)
        head = self.prefix[self.given : self.given + size]
        chunk = head + b" " * (size - len(head))
        buffer[:size] = chunk
        self.given += size
        return size


def declared(client, path, length, headers=None):
    """POST a JSON body that declares ``length`` bytes but must never be read."""
    body = UnreadableBody()
    response = client.post(
        path,
        input_stream=body,
        content_type="application/json",
        headers=headers or {},
        environ_overrides={"CONTENT_LENGTH": str(length)},
    )
    return response, body


def chunked(client, path, stream, headers=None):
    return client.post(
        path,
        input_stream=stream,
        content_type="application/json",
        headers={**(headers or {}), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_1_gib_sign_in_body_is_413_without_being_read(client):
    r, body = declared(client, "/api/auth/sign-in/email", GIB)
    assert_error_envelope(r, 413, "payload_too_large")
    assert body.asked == 0


@pytest.mark.parametrize("path", ["/api/auth/sign-in/email", "/api/auth/sign-up/email"])
def test_auth_body_over_a_few_kib_is_413_without_being_read(client, path):
    r, body = declared(client, path, limits.AUTH_BODY_BYTES + 1)
    assert_error_envelope(r, 413, "payload_too_large")
    assert body.asked == 0


def test_chunked_auth_body_is_read_only_up_to_its_bound(client):
    stream = CountingBody(b'{"email": "a@example.com", "password": "x"')
    r = chunked(client, "/api/auth/sign-in/email", stream)
    assert_error_envelope(r, 413, "payload_too_large")
    assert stream.given <= limits.AUTH_BODY_BYTES + 64 * 1024


def test_auth_body_just_under_its_bound_is_parsed(app, client):
    user = make_user(app)
    text = json.dumps({"email": user.email, "password": "wrong password"})
    padded = text.ljust(limits.AUTH_BODY_BYTES).encode()
    r = client.post("/api/auth/sign-in/email", data=padded, content_type="application/json")
    assert_error_envelope(r, 401, "invalid_credentials")


def test_a_1_gib_event_body_is_413_without_being_read(app, client):
    run = make_run(app, make_user(app), status="running")
    r, body = declared(client, f"/api/runner/runs/{run.id}/events", GIB, runner_headers(app, run))
    assert_error_envelope(r, 413, "payload_too_large")
    assert body.asked == 0


def test_an_event_batch_of_1000_events_with_a_kib_each_is_accepted(app, client):
    run = make_run(app, make_user(app), status="running")
    events = [{"eventType": "log", "message": f"{i} " + "x" * 1024} for i in range(1000)]
    r = client.post(
        f"/api/runner/runs/{run.id}/events",
        json={"events": events},
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200, r.get_json()
    assert len(r.get_json()["eventIds"]) == 1000


def test_the_same_size_is_413_where_a_small_body_is_expected(app, client):
    user = make_user(app)
    token = sign_in(client, user)
    prompt = {"prompt": "a landing page", "padding": "x" * (2 * 1024 * 1024)}
    r = client.post("/api/design/runs", json=prompt, headers=bearer(token))
    assert_error_envelope(r, 413, "payload_too_large")


def test_max_json_bytes_bounds_event_batches(app_factory, monkeypatch):
    monkeypatch.setenv("MAX_JSON_BYTES", "2000")
    app = app_factory()
    assert app.config["MAX_JSON_BYTES"] == 2000
    run = make_run(app, make_user(app), status="running")
    client = app.test_client()
    small = {"eventType": "log", "message": "x" * 1000}
    big = {"eventType": "log", "message": "x" * 3000}
    url = f"/api/runner/runs/{run.id}/events"
    assert client.post(url, json=small, headers=runner_headers(app, run)).status_code == 200
    r = client.post(url, json=big, headers=runner_headers(app, run))
    body = assert_error_envelope(r, 413, "payload_too_large")
    assert "2000" in body["error"]
    stream = CountingBody(b'{"eventType": "log", "message": "')
    r = chunked(client, url, stream, runner_headers(app, run))
    assert_error_envelope(r, 413, "payload_too_large")
    assert stream.given <= 2000 + 64 * 1024


def test_multipart_upload_is_not_bound_by_the_json_limit(app_factory, monkeypatch):
    monkeypatch.setenv("MAX_JSON_BYTES", "2000")
    app = app_factory()
    run = make_run(app, make_user(app), status="running")
    r = app.test_client().post(
        f"/api/runner/runs/{run.id}/artifacts",
        data={"artifactType": "image", "file": (io.BytesIO(b"x" * 50_000), "a.png")},
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["sizeBytes"] == 50_000


def test_max_json_bytes_must_be_a_positive_whole_number(app_factory, monkeypatch):
    from designrun.config import ConfigError

    monkeypatch.setenv("MAX_JSON_BYTES", "0")
    with pytest.raises(ConfigError, match="MAX_JSON_BYTES"):
        app_factory()


def test_default_max_json_bytes_is_32_mib(app):
    assert app.config["MAX_JSON_BYTES"] == 32 * 1024 * 1024
