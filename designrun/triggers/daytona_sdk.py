"""The adapter around Daytona's official Python SDK: the only module that imports ``daytona``.

Everything the ``daytona`` runner backend needs from Daytona is a method of ``DaytonaClient``,
taking and returning plain values (``SandboxInfo``, strings), and every failure comes out as
``SandboxError``; a new SDK version therefore touches this file only. The HTTP calls each
method makes are listed in tests/fake_daytona.py, the reference for what designrun expects.

What the pinned SDK (0.226.x) does, read from its source, and how this module deals with it:

- ``Daytona()`` starts a background thread that opens a Socket.IO connection at
  ``{api_url}/socket.io/`` (sandbox state events) and silently falls back to polling the REST
  API when that fails. We keep that default deliberately (``use_deprecated_polling=False``,
  passed explicitly so that a stray ``DAYTONA_USE_DEPRECATED_POLLING`` cannot switch it): the
  polling-only mode is deprecated, raises a ``DeprecationWarning`` on every construction and
  will be removed. One client is built per process, lazily, on a background thread (never at
  import, never on a request thread), so a process holds at most one such connection, which
  the SDK itself closes 30 s after its last subscription ends.
- ``create()`` blocks until the sandbox is ``started`` (its timeout is enforced by raising an
  exception asynchronously into the calling thread); only the dispatcher's pool calls it.
  ``resources`` only apply to image-based creation. ``delete()`` returns before the sandbox is
  gone; a 404 on delete means it already is.
- A session is one shell: commands run one after another and ``exit`` would kill it. A
  command's stdin never reaches end-of-file, so the job is uploaded as a file (mode 0600)
  instead of being piped to ``designrun-runner --job -``.
- The daemon records a command's exit code before its logs are fully flushed: callers read
  the logs again after they have seen the exit code (see triggers/sandboxes.py).
- Errors arrive as ``DaytonaNotFoundError``, ``DaytonaConflictError``,
  ``DaytonaInternalServerError``, ``DaytonaAuthenticationError``, ``DaytonaConnectionError``
  … (all ``DaytonaError``); they become ``SandboxError`` with ``not_found``/``conflict`` set.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from daytona import Daytona

T = TypeVar("T")

# Daytona states after which a sandbox will never run our command again.
GONE_STATES = frozenset({"destroyed", "destroying"})
FAILED_STATES = frozenset({"error", "build_failed"})
# States ``start`` must be asked for; any other non-started state is waited on.
RESTARTABLE_STATES = frozenset({"stopped", "archived", "paused"})
# States in which nothing runs in the sandbox any more (a runner in it is gone).
STOPPED_STATES = frozenset({"stopped", "stopping", "archived", "archiving"})
REQUEST_TIMEOUT = 30.0  # seconds for one plain REST call (the SDK has no default)


class SandboxError(Exception):
    """A Daytona call failed; the message says why (never a credential)."""

    def __init__(self, message: str, *, not_found: bool = False, conflict: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found
        self.conflict = conflict


@dataclass(frozen=True)
class SandboxInfo:
    """What designrun reads of a sandbox."""

    id: str
    state: str
    error_reason: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def gone(self) -> bool:
        return self.state in GONE_STATES

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES

    @property
    def stopped(self) -> bool:
        return self.state in STOPPED_STATES


@dataclass(frozen=True)
class Watched:
    """One look at a running sandbox: None for a sandbox Daytona does not know any more."""

    sandbox: SandboxInfo | None
    exit_code: int | None


@dataclass(frozen=True)
class SandboxSpec:
    """How to create a run's sandbox (see docs/daytona.md § Settings)."""

    labels: dict[str, str]
    snapshot: str | None = None
    image: str | None = None
    cpu: int | None = None
    memory: int | None = None  # GiB
    disk: int | None = None  # GiB
    auto_stop_minutes: int | None = None
    auto_delete_minutes: int | None = None
    domain_allow_list: str | None = None
    network_allow_list: str | None = None


def _state(value: Any) -> str:
    return str(getattr(value, "value", value) or "unknown")


def _info(sandbox: Any) -> SandboxInfo:
    return SandboxInfo(
        id=str(sandbox.id),
        state=_state(sandbox.state),
        error_reason=sandbox.error_reason,
        labels=dict(sandbox.labels or {}),
    )


def _call(action: str, func: Callable[[], T]) -> T:
    """Run one SDK call, turning every failure into SandboxError (``action`` names it)."""
    from daytona import DaytonaConflictError, DaytonaError, DaytonaNotFoundError

    try:
        return func()
    except DaytonaNotFoundError as exc:
        raise SandboxError(f"{action}: {exc}", not_found=True) from None
    except DaytonaConflictError as exc:
        raise SandboxError(f"{action}: {exc}", conflict=True) from None
    except DaytonaError as exc:
        raise SandboxError(f"{action}: {exc}") from None
    except Exception as exc:  # the SDK lets some transport and validation errors through
        raise SandboxError(f"{action}: {type(exc).__name__}: {exc}") from None


class DaytonaClient:
    """One process's Daytona SDK client (see the module docstring for its threading)."""

    def __init__(self, api_key: str, api_url: str | None, target: str | None) -> None:
        from daytona import Daytona, DaytonaConfig

        config = DaytonaConfig(
            api_key=api_key,
            api_url=api_url,
            target=target,
            # Deliberate: event streaming with the SDK's own polling fallback (module docstring).
            use_deprecated_polling=False,
        )
        self._sdk: Daytona = _call("Daytona client", lambda: Daytona(config))

    # --- sandboxes ------------------------------------------------------------------------------

    def create(self, spec: SandboxSpec, timeout: float) -> SandboxInfo:
        """Create a sandbox and wait until it is started (at most ``timeout`` seconds)."""
        from daytona import (
            CreateSandboxFromImageParams,
            CreateSandboxFromSnapshotParams,
            Resources,
        )

        common: dict[str, Any] = {
            "labels": dict(spec.labels),
            "auto_stop_interval": spec.auto_stop_minutes,
            "auto_delete_interval": spec.auto_delete_minutes,
            "domain_allow_list": spec.domain_allow_list,
            "network_allow_list": spec.network_allow_list,
        }
        params: Any
        if spec.image:
            resources = None
            if spec.cpu or spec.memory or spec.disk:
                resources = Resources(cpu=spec.cpu, memory=spec.memory, disk=spec.disk)
            params = CreateSandboxFromImageParams(image=spec.image, resources=resources, **common)
        else:
            params = CreateSandboxFromSnapshotParams(snapshot=spec.snapshot, **common)
        sandbox = _call("create sandbox", lambda: self._sdk.create(params, timeout=timeout))
        return _info(sandbox)

    def get(self, sandbox_id: str) -> SandboxInfo | None:
        """The sandbox, or None when Daytona does not know it (any more)."""
        try:
            sandbox = _call("get sandbox", lambda: self._sdk.get(sandbox_id, REQUEST_TIMEOUT))
        except SandboxError as exc:
            if exc.not_found:
                return None
            raise
        return _info(sandbox)

    def find(self, labels: Mapping[str, str]) -> list[SandboxInfo]:
        """Every sandbox carrying all of ``labels`` (all pages)."""
        return list(self.iter_labelled(labels))

    def iter_labelled(self, labels: Mapping[str, str]) -> Iterator[SandboxInfo]:
        """Iterate over the sandboxes carrying all of ``labels``, page by page."""
        from daytona import ListSandboxesQuery

        query = ListSandboxesQuery(labels=dict(labels), limit=100)
        pages = _call("list sandboxes", lambda: self._sdk.list(query, REQUEST_TIMEOUT))
        while True:
            sandbox = _call("list sandboxes", lambda: next(pages, None))
            if sandbox is None:
                return
            yield _info(sandbox)

    def ensure_started(self, sandbox_id: str, timeout: float) -> SandboxInfo:
        """Start a stopped sandbox, or wait for one on its way; raise if it cannot run."""
        sandbox = _call("get sandbox", lambda: self._sdk.get(sandbox_id, REQUEST_TIMEOUT))
        state = _state(sandbox.state)
        if state in RESTARTABLE_STATES:
            _call("start sandbox", lambda: sandbox.start(timeout))
        elif state != "started":
            _call("wait for sandbox", lambda: sandbox.wait_for_sandbox_start(timeout))
        return _info(sandbox)

    def delete(self, sandbox_id: str) -> bool:
        """Ask Daytona to delete the sandbox; False when it was already gone.

        Does not wait for the deletion to finish (Daytona completes it on its own).
        """
        try:
            sandbox = _call("delete sandbox", lambda: self._sdk.get(sandbox_id, REQUEST_TIMEOUT))
            if _state(sandbox.state) in GONE_STATES:
                return False
            _call("delete sandbox", lambda: sandbox.delete(REQUEST_TIMEOUT))
        except SandboxError as exc:
            if exc.not_found:
                return False
            raise
        return True

    # --- the runner command ----------------------------------------------------------------------

    def work_dir(self, sandbox_id: str) -> str:
        """The sandbox's working directory (absolute)."""
        sandbox = _call("get sandbox", lambda: self._sdk.get(sandbox_id, REQUEST_TIMEOUT))
        return _call("get work dir", sandbox.get_work_dir)

    def upload_private(self, sandbox_id: str, path: str, content: bytes) -> None:
        """Write ``content`` to ``path`` in the sandbox, readable by its owner only."""
        sandbox = _call("get sandbox", lambda: self._sdk.get(sandbox_id, REQUEST_TIMEOUT))
        _call("upload file", lambda: sandbox.fs.upload_file(content, path, 60))
        _call(
            "set file mode",
            lambda: sandbox.fs.set_file_permissions(path, mode="600", request_timeout=60),
        )

    def start_command(self, sandbox_id: str, session_id: str, argv: list[str]) -> str:
        """Run ``argv`` asynchronously in session ``session_id``; return the command id.

        Idempotent per session: if the session already exists and ran a command (a previous
        attempt started it and then lost the answer), that command's id is returned and nothing
        is started a second time.
        """
        from daytona import SessionExecuteRequest

        sandbox = _call("get sandbox", lambda: self._sdk.get(sandbox_id, REQUEST_TIMEOUT))
        process = sandbox.process
        try:
            _call("create session", lambda: process.create_session(session_id, REQUEST_TIMEOUT))
        except SandboxError as exc:
            if not exc.conflict:
                raise
            session = _call("get session", lambda: process.get_session(session_id, REQUEST_TIMEOUT))
            if session.commands:
                return str(session.commands[0].id)
        request = SessionExecuteRequest(command=shlex.join(argv), run_async=True)
        response = _call(
            "start command",
            lambda: process.execute_session_command(session_id, request, timeout=60),
        )
        return str(response.cmd_id)

    def watch(self, sandbox_id: str, session_id: str, command_id: str) -> Watched:
        """The sandbox's state and, while it is started, the command's exit code (None: runs).

        A sandbox whose command still runs is also marked active, so that the auto-stop
        backstop never stops a sandbox at work (Daytona does not count a running process as
        activity). One sandbox lookup per call: it runs every DAYTONA_WATCH_INTERVAL seconds.
        """
        try:
            sandbox = _call("get sandbox", lambda: self._sdk.get(sandbox_id, REQUEST_TIMEOUT))
        except SandboxError as exc:
            if exc.not_found:
                return Watched(sandbox=None, exit_code=None)
            raise
        info = _info(sandbox)
        if info.state != "started":
            return Watched(sandbox=info, exit_code=None)
        command = _call(
            "get command",
            lambda: sandbox.process.get_session_command(session_id, command_id, REQUEST_TIMEOUT),
        )
        if command.exit_code is not None:
            return Watched(sandbox=info, exit_code=int(command.exit_code))
        _call("refresh activity", lambda: sandbox.refresh_activity(REQUEST_TIMEOUT))
        return Watched(sandbox=info, exit_code=None)

    def logs(self, sandbox_id: str, session_id: str, command_id: str) -> str:
        """The command's output so far (stdout and stderr interleaved)."""
        sandbox = _call("get sandbox", lambda: self._sdk.get(sandbox_id, REQUEST_TIMEOUT))
        logs = _call(
            "get command logs",
            lambda: sandbox.process.get_session_command_logs(
                session_id, command_id, REQUEST_TIMEOUT
            ),
        )
        return str(logs.output or (logs.stdout or "") + (logs.stderr or ""))


_clients: dict[tuple[str, str | None, str | None], DaytonaClient] = {}
_clients_guard = threading.Lock()


def client_for(config: Mapping[str, Any]) -> DaytonaClient:
    """This process's client for the configured API key, URL and target (built once).

    Raises SandboxError when the SDK refuses the settings (e.g. no API key).
    """
    key = (
        str(config.get("DAYTONA_API_KEY") or ""),
        config.get("DAYTONA_API_URL"),
        config.get("DAYTONA_TARGET"),
    )
    with _clients_guard:
        client = _clients.get(key)
        if client is None:
            if not key[0]:
                raise SandboxError("DAYTONA_API_KEY is not set")
            client = DaytonaClient(*key)
            _clients[key] = client
        return client
