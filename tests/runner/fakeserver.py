"""An in-memory runner API on 127.0.0.1 that misbehaves on purpose (seeded, so deterministic).

It implements what the client needs of API.md § Runner API: bearer auth (401 + code), status
with the terminal rules (409 run_finished + runStatus), events with idempotency keys and
per-run sequences, artifacts (JSON or multipart), token refresh. ``Chaos`` makes it drop
connections before or after storing (the "acked but response lost" case), or answer 503/429.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import random
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Chaos:
    drop_before: float = 0.0  # close the connection without answering; nothing stored
    drop_after: float = 0.0  # store, then close without answering (the response is lost)
    unavailable: float = 0.0  # 503 (Retry-After: 0 every other time)
    rate_limited: float = 0.0  # 429 with Retry-After: 0


@dataclass
class Seen:
    endpoint: str
    token: str | None
    outcome: str  # "ok", "drop_before", "drop_after", "503", "429", "401", "forced", ...
    keys: list[str] = field(default_factory=list)


class FakeRunnerApi:
    def __init__(
        self, run_id: str, tokens: set[str], *, seed: int = 0, chaos: Chaos | None = None
    ) -> None:
        self.run_id = run_id
        self.tokens = set(tokens)
        self.chaos = chaos or Chaos()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.status = "queued"
        self.progress = 0.0
        self.error: str | None = None  # the last status update's ``error``
        self.events: list[dict[str, Any]] = []
        self.keys: dict[str, str] = {}
        self.artifacts: list[dict[str, Any]] = []
        self.seen: list[Seen] = []
        self.timeline: list[str] = []  # "events:<n>" / "status:<status>" in the order applied
        # endpoint -> list of (status, body, headers) answered first, one per request
        self.forced: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = {}
        self.mint: Callable[[], str] = lambda: f"token-{uuid.uuid4().hex}"
        self.stream_uploads = False  # count and hash multipart bodies instead of parsing them
        self.reject_type: str | None = None  # a batch holding this eventType is a 400
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()

    @property
    def callback_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/runner/runs/{self.run_id}"

    def start(self) -> FakeRunnerApi:
        api = self

        class Handler(_Handler):
            fake = api

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection: the server is now unreachable."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        assert self._thread is not None
        self._thread.join()
        self._server = None

    def outcomes(self, endpoint: str | None = None) -> list[str]:
        with self.lock:
            return [s.outcome for s in self.seen if endpoint in (None, s.endpoint)]

    # -- the API, called by the handler with self.lock held ---------------------------------

    def chaos_outcome(self) -> str:
        roll = self.rng.random()
        for name, p in (
            ("drop_before", self.chaos.drop_before),
            ("drop_after", self.chaos.drop_after),
            ("503", self.chaos.unavailable),
            ("429", self.chaos.rate_limited),
        ):
            if roll < p:
                return name
            roll -= p
        return "ok"

    def apply(self, endpoint: str, body: Any, seen: Seen) -> tuple[int, dict[str, Any]]:
        if endpoint == "events":
            events = body["events"] if "events" in body else [body]
            if any(event.get("eventType") == self.reject_type for event in events):
                return 400, {"ok": False, "error": "bad event", "code": "invalid_request"}
            ids = []
            for event in events:
                key = event.get("idempotencyKey")
                seen.keys.append(key)
                if key is not None and key in self.keys:
                    ids.append(self.keys[key])
                    continue
                event_id = str(uuid.uuid4())
                self.events.append({**event, "id": event_id, "sequence": len(self.events) + 1})
                if key is not None:
                    self.keys[key] = event_id
                ids.append(event_id)
            self.timeline.append(f"events:{len(self.events)}")
            return 200, {"ok": True, "runStatus": self.status, "eventIds": ids}
        if endpoint == "status":
            status = body.get("status")
            if self.status in TERMINAL and status != self.status:
                return 409, {
                    "ok": False,
                    "error": "run is finished",
                    "code": "run_finished",
                    "runStatus": self.status,
                }
            if self.status in TERMINAL:
                return 200, {"ok": True, "runStatus": self.status, "progress": self.progress}
            if status is not None:
                self.status = status
                self.timeline.append(f"status:{status}")
            if "error" in body:
                self.error = body["error"]
            if "progress" in body:
                self.progress = min(1.0, max(0.0, body["progress"]))
            elif status in TERMINAL:
                self.progress = 1.0
            return 200, {"ok": True, "runStatus": self.status, "progress": self.progress}
        if endpoint == "token":
            token = self.mint()
            self.tokens.add(token)
            return 200, {"ok": True, "runStatus": self.status, "runnerToken": token}
        if endpoint == "artifacts":
            artifact_id = str(uuid.uuid4())
            self.artifacts.append({**body, "id": artifact_id})
            key = body.get("storageKey") or f"runs/{self.run_id}/{artifact_id}/file"
            return 200, {
                "ok": True,
                "runStatus": self.status,
                "artifactId": artifact_id,
                "storageKey": key,
                "sizeBytes": body.get("sizeBytes"),
            }
        return 404, {"ok": False, "error": "not found", "code": "not_found"}


def parse_multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        payload: Any = part.get_payload(decode=True)
        if part.get_filename() is not None:
            fields[name] = {
                "filename": part.get_filename(),
                "contentType": part.get_content_type(),
                "data": payload,
            }
        else:
            fields[name] = payload.decode("utf-8")
    return fields


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeRunnerApi

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without NODELAY, Nagle plus the client's
        # delayed ACK would add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake.lock:
            self.fake._sockets.add(self.connection)

    def finish(self) -> None:
        with self.fake.lock:
            self.fake._sockets.discard(self.connection)
        super().finish()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if not self.fake.stream_uploads:
            return self.rfile.read(length)
        digest = hashlib.sha256()
        left = length
        while left:
            chunk = self.rfile.read(min(left, 64 * 1024))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        return json.dumps({"received": length - left, "sha256": digest.hexdigest()}).encode()

    def _answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True  # return without answering: the client sees a dropped line

    def do_POST(self) -> None:
        fake = self.fake
        prefix = f"/api/runner/runs/{fake.run_id}/"
        endpoint = self.path[len(prefix) :] if self.path.startswith(prefix) else self.path
        raw = self._read_body()
        auth = self.headers.get("Authorization") or ""
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        with fake.lock:
            seen = Seen(endpoint, token, "ok")
            fake.seen.append(seen)
            forced = fake.forced.get(endpoint)
            if forced:
                status, body, headers = forced.pop(0)
                seen.outcome = "forced"
                self._answer(status, body, headers)
                return
            if token not in fake.tokens:
                seen.outcome = "401"
                self._answer(
                    401,
                    {"ok": False, "error": "unauthorized", "code": "unauthorized"},
                    {"WWW-Authenticate": "Bearer"},
                )
                return
            outcome = fake.chaos_outcome()
            seen.outcome = outcome
            if outcome == "drop_before":
                self._drop()
                return
            if outcome in ("503", "429"):
                headers = (
                    {"Retry-After": "0"} if outcome == "429" or fake.rng.random() < 0.5 else {}
                )
                code = "rate_limited" if outcome == "429" else "database_unavailable"
                self._answer(int(outcome), {"ok": False, "error": code, "code": code}, headers)
                return
            content_type = self.headers.get("Content-Type") or ""
            if content_type.startswith("multipart/form-data"):
                if fake.stream_uploads:
                    body = {"stream": json.loads(raw), "contentType": content_type}
                else:
                    body = parse_multipart(content_type, raw)
            else:
                body = json.loads(raw or b"{}")
            status, answer = fake.apply(endpoint, body, seen)
            if outcome == "drop_after":
                self._drop()
                return
            self._answer(status, answer)
