"""A fake Daytona API: a real HTTP server on 127.0.0.1 that the real Daytona SDK talks to.

This is the reference for what designrun's adapter (designrun/triggers/daytona_sdk.py) expects
from Daytona: each route below is one the SDK (0.226.x) calls for the operations designrun uses,
with Daytona's paths, JSON field names and status codes. Everything is under ``/api``; the
toolbox (the daemon inside each sandbox) is reached through ``toolboxProxyUrl`` + the sandbox id.

SDK call → request → answer (``{toolbox}`` is ``toolboxProxyUrl``):

- ``Daytona.create`` → ``POST /api/sandbox`` → 200 Sandbox, ``creating``; the SDK then polls
  ``get`` until ``started`` (the next GET answers ``started``)
- ``Daytona.get``, ``Sandbox.refresh_data`` → ``GET /api/sandbox/{id}`` → 200 Sandbox; 404
  once deleted
- ``Daytona.list(ListSandboxesQuery(labels=…))`` → ``GET /api/sandbox?labels={json}&limit=…``
  → 200 ``{items, nextCursor}``
- ``Sandbox.delete`` → ``DELETE /api/sandbox/{id}`` → 200 Sandbox (``destroying``); 404 if
  unknown
- ``Sandbox.start`` → ``POST /api/sandbox/{id}/start`` → 200 Sandbox
- ``Sandbox.refresh_activity`` → ``POST /api/sandbox/{id}/last-activity`` → 201
- the SDK's event stream (a background thread) → ``GET /api/socket.io/`` → 404, after which the
  SDK polls (as it does whenever the stream is unavailable)
- ``Sandbox.get_work_dir`` → ``GET {toolbox}/{id}/work-dir`` → 200 ``{dir}``
- ``fs.upload_file`` → ``POST {toolbox}/{id}/files/bulk-upload`` (multipart ``files[0].path``,
  ``files[0].file``) → 200
- ``fs.set_file_permissions`` → ``POST {toolbox}/{id}/files/permissions?path=…&mode=…`` → 200
- ``process.create_session`` → ``POST {toolbox}/{id}/process/session`` ``{sessionId}`` → 201;
  409 if it exists
- ``process.get_session`` → ``GET {toolbox}/{id}/process/session/{s}`` → 200
  ``{sessionId, commands}``
- ``process.execute_session_command`` (``run_async``) → ``POST …/process/session/{s}/exec``
  ``{command, runAsync}`` → 202 ``{cmdId}``
- ``process.get_session_command`` → ``GET …/session/{s}/command/{c}`` → 200
  ``{id, command, exitCode}`` (``exitCode`` null while it runs)
- ``process.get_session_command_logs`` → ``GET …/session/{s}/command/{c}/logs`` → 200
  ``{output, stdout, stderr}``

Errors use Daytona's envelope ``{"statusCode", "message", "error"}``; the SDK turns 404 into
``DaytonaNotFoundError``, 409 into ``DaytonaConflictError``, 5xx into
``DaytonaInternalServerError`` and friends, a refused connection into ``DaytonaConnectionError``.

A command really runs: ``bash -c <command>`` in the sandbox's own folder, its stdout and stderr
captured as its logs, and (as in Daytona) its stdin is a pipe that is never closed. As in
Daytona, the exit code is visible before the last ``log_lag_lines`` lines of the logs, which
appear ``log_lag_seconds`` after the exit. Differences from Daytona, on purpose: each command
is its own process (not one shell per session), sandboxes start instantly, and nothing is
isolated (the folder is on this machine).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "dtn_fake_key_0123456789"


@dataclass
class Command:
    id: str
    command: str
    process: subprocess.Popen[bytes]
    log: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    exited_at: float | None = None


@dataclass
class Sandbox:
    id: str
    body: dict[str, Any]
    root: Path
    state: str = "creating"
    error_reason: str | None = None
    sessions: dict[str, list[Command]] = field(default_factory=dict)
    activity: int = 0

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.body.get("labels") or {})


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int


class FakeDaytona:
    """The server and its state; ``url`` is what DAYTONA_API_URL should be."""

    def __init__(self, log_lag_lines: int = 0, log_lag_seconds: float = 0.5) -> None:
        self.lock = threading.RLock()
        self.sandboxes: dict[str, Sandbox] = {}
        self.deleted: list[str] = []
        self.created: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.log_lag_lines = log_lag_lines
        self.log_lag_seconds = log_lag_seconds
        # Put first on the PATH of commands (a test's own ``designrun-runner``, say).
        self.path_prefix: str | None = None
        self._ids = itertools.count(1)
        self._dir = Path(tempfile.mkdtemp(prefix="fake-daytona-"))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.toolbox_url = f"http://127.0.0.1:{self.port}/toolbox"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeDaytona:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for sandbox in self.sandboxes.values():
                _kill(sandbox)
        shutil.rmtree(self._dir, ignore_errors=True)

    # --- what tests use ---------------------------------------------------------------------------

    def fail(self, method: str, path_regex: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``status`` (Daytona's envelope)."""
        with self.lock:
            self.faults.append(Fault(method, re.compile(path_regex), status, times))

    def live(self) -> list[Sandbox]:
        """Sandboxes not deleted."""
        with self.lock:
            return list(self.sandboxes.values())

    def set_state(self, sandbox_id: str, state: str, reason: str | None = None) -> None:
        with self.lock:
            sandbox = self.sandboxes[sandbox_id]
            sandbox.state, sandbox.error_reason = state, reason
            if state != "started":
                _kill(sandbox)

    def add_sandbox(self, labels: dict[str, str]) -> str:
        """A started sandbox made outside designrun (or by a designrun that crashed)."""
        with self.lock:
            sandbox = self._create({"labels": labels})
            sandbox.state = "started"
            return sandbox.id

    def delete_behind_our_back(self, sandbox_id: str) -> None:
        """Daytona deletes the sandbox on its own (auto-delete, a user in the dashboard)."""
        with self.lock:
            _kill(self.sandboxes.pop(sandbox_id))

    def commands(self, sandbox_id: str) -> list[Command]:
        with self.lock:
            return [c for cs in self.sandboxes[sandbox_id].sessions.values() for c in cs]

    # --- routes -----------------------------------------------------------------------------------

    def handle(self, method: str, url: str, headers: Any, body: bytes) -> tuple[int, Any]:
        parts = urlsplit(url)
        path, query = parts.path, parse_qs(parts.query)
        with self.lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.pattern.search(path):
                    fault.times -= 1
                    return fault.status, _error(fault.status, "injected failure")
        if path.startswith("/api/socket.io"):
            return 404, _error(404, "no event stream here")
        if headers.get("Authorization") != f"Bearer {API_KEY}":
            return 401, _error(401, "Unauthorized")
        if path.startswith("/api/"):
            return self._api(method, path[len("/api") :], query, body)
        if path.startswith("/toolbox/"):
            return self._toolbox(method, path[len("/toolbox") :], query, headers, body)
        return 404, _error(404, f"Cannot {method} {path}")

    def _api(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Any:
        with self.lock:
            if method == "POST" and path == "/sandbox":
                return 200, self._dto(self._create(json.loads(body)))
            if method == "GET" and path == "/sandbox":
                wanted = json.loads(query.get("labels", ["{}"])[0])
                items = [
                    self._dto(s)
                    for s in self.sandboxes.values()
                    if all(s.labels.get(k) == v for k, v in wanted.items())
                ]
                return 200, {"items": items, "nextCursor": None}
            match = re.fullmatch(r"/sandbox/([^/]+)(/[a-z-]+)?", path)
            if match is None:
                return 404, _error(404, f"Cannot {method} {path}")
            sandbox = self.sandboxes.get(match.group(1))
            if sandbox is None:
                return 404, _error(404, f"Sandbox with ID or name {match.group(1)} not found")
            action = match.group(2)
            if method == "GET" and action is None:
                if sandbox.state in {"creating", "starting"}:
                    sandbox.state = "started"
                return 200, self._dto(sandbox)
            if method == "DELETE" and action is None:
                _kill(sandbox)
                del self.sandboxes[sandbox.id]
                self.deleted.append(sandbox.id)
                sandbox.state = "destroying"
                return 200, self._dto(sandbox)
            if method == "POST" and action == "/start":
                sandbox.state = "started"
                return 200, self._dto(sandbox)
            if method == "POST" and action == "/last-activity":
                sandbox.activity += 1
                return 201, None
            if method == "GET" and action == "/toolbox-proxy-url":
                return 200, {"url": self.toolbox_url}
        return 404, _error(404, f"Cannot {method} {path}")

    def _create(self, body: dict[str, Any]) -> Sandbox:
        sandbox_id = f"sbx-{next(self._ids):04d}"
        root = self._dir / sandbox_id
        root.mkdir()
        sandbox = Sandbox(id=sandbox_id, body=body, root=root)
        self.sandboxes[sandbox_id] = sandbox
        self.created.append(body)
        return sandbox

    def _dto(self, sandbox: Sandbox) -> dict[str, Any]:
        body = sandbox.body
        return {
            "id": sandbox.id,
            "organizationId": "org-fake",
            "name": sandbox.id,
            "snapshot": body.get("snapshot"),
            "user": "daytona",
            "env": body.get("env") or {},
            "labels": sandbox.labels,
            "public": False,
            "networkBlockAll": bool(body.get("networkBlockAll")),
            "kvm": False,
            "networkAllowList": body.get("networkAllowList"),
            "domainAllowList": body.get("domainAllowList"),
            "target": body.get("target") or "us",
            "cpu": body.get("cpu") or 1,
            "gpu": 0,
            "memory": body.get("memory") or 1,
            "disk": body.get("disk") or 3,
            "state": sandbox.state,
            "errorReason": sandbox.error_reason,
            "autoStopInterval": body.get("autoStopInterval"),
            "autoDeleteInterval": body.get("autoDeleteInterval"),
            "createdAt": datetime.now(UTC).isoformat(),
            "toolboxProxyUrl": self.toolbox_url,
        }

    def _toolbox(
        self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes
    ) -> Any:
        sandbox_id, _, rest = path.lstrip("/").partition("/")
        with self.lock:
            sandbox = self.sandboxes.get(sandbox_id)
            if sandbox is None or sandbox.state != "started":
                return 404, _error(404, "sandbox not running")
            rest = "/" + rest
            if method == "GET" and rest == "/work-dir":
                return 200, {"dir": str(sandbox.root)}
            if method == "POST" and rest == "/files/bulk-upload":
                return self._upload(sandbox, headers, body)
            if method == "POST" and rest == "/files/permissions":
                target = self._inside(sandbox, query["path"][0])
                target.chmod(int(query["mode"][0], 8))
                return 200, None
            if method == "POST" and rest == "/process/session":
                session_id = json.loads(body)["sessionId"]
                if session_id in sandbox.sessions:
                    return 409, _error(409, f"session {session_id} already exists")
                sandbox.sessions[session_id] = []
                return 201, None
            match = re.fullmatch(
                r"/process/session/([^/]+)(?:/(exec|command/([^/]+)(/logs)?))?", rest
            )
            if match is None:
                return 404, _error(404, f"Cannot {method} {rest}")
            session = sandbox.sessions.get(match.group(1))
            if session is None:
                return 404, _error(404, "session not found")
            if method == "GET" and match.group(2) is None:
                return 200, {"sessionId": match.group(1), "commands": [_cmd(c) for c in session]}
            if method == "POST" and match.group(2) == "exec":
                command = self._run(sandbox, json.loads(body)["command"])
                session.append(command)
                return 202, {"cmdId": command.id}
            command = next((c for c in session if c.id == match.group(3)), None)
            if command is None or method != "GET":
                return 404, _error(404, "command not found")
            if match.group(4) is None:
                return 200, _cmd(command)
            text = self._visible_log(command)
            return 200, {"output": text, "stdout": text, "stderr": ""}

    def _inside(self, sandbox: Sandbox, path: str) -> Path:
        target = (sandbox.root / path).resolve()
        if not target.is_relative_to(sandbox.root.resolve()):
            raise PermissionError(path)
        return target

    def _upload(self, sandbox: Sandbox, headers: Any, body: bytes) -> tuple[int, Any]:
        raw = f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        fields = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()
        }
        index = 0
        while f"files[{index}].path" in fields:
            target = self._inside(sandbox, fields[f"files[{index}].path"].decode())
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(fields[f"files[{index}].file"])
            index += 1
        return 200, {"files": [], "errors": []}

    def _run(self, sandbox: Sandbox, command_line: str) -> Command:
        path = [Path(sys.executable).parent, os.environ.get("PATH", "")]
        env = {
            "PATH": os.pathsep.join(str(p) for p in [self.path_prefix, *path] if p),
            "HOME": str(sandbox.root),
            "LANG": "C.UTF-8",
            "NO_PROXY": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        process = subprocess.Popen(
            ["bash", "-c", command_line],
            cwd=sandbox.root,
            env=env,
            stdin=subprocess.PIPE,  # never closed: a session command's stdin never ends
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        command = Command(id=f"cmd-{next(self._ids):04d}", command=command_line, process=process)
        threading.Thread(target=self._pump, args=(command,), daemon=True).start()
        return command

    def _pump(self, command: Command) -> None:
        assert command.process.stdout is not None
        for chunk in iter(lambda: command.process.stdout.read1(65536), b""):  # type: ignore[union-attr]
            with self.lock:
                command.log += chunk
        command.process.stdout.close()
        code = command.process.wait()
        with self.lock:
            command.exit_code, command.exited_at = code, time.monotonic()

    def _visible_log(self, command: Command) -> str:
        text = command.log.decode(errors="replace")
        if command.exited_at is None or not self.log_lag_lines:
            return text
        if time.monotonic() - command.exited_at >= self.log_lag_seconds:
            return text
        lines = text.splitlines(keepends=True)
        return "".join(lines[: max(0, len(lines) - self.log_lag_lines)])


def _cmd(command: Command) -> dict[str, Any]:
    return {"id": command.id, "command": command.command, "exitCode": command.exit_code}


def _kill(sandbox: Sandbox) -> None:
    for commands in sandbox.sessions.values():
        for command in commands:
            if command.process.poll() is None:
                try:
                    os.killpg(command.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                command.process.wait()
            if command.process.stdin is not None:
                command.process.stdin.close()


def _error(status: int, message: str) -> dict[str, Any]:
    names = {401: "Unauthorized", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}
    return {"statusCode": status, "message": message, "error": names.get(status, "Error")}


def _handler(fake: FakeDaytona) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                status, payload = fake.handle(self.command, self.path, self.headers, body)
            except Exception as exc:  # a bug in the fake: a 500 the test will notice
                status, payload = 500, _error(500, f"fake Daytona: {exc!r}")
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
