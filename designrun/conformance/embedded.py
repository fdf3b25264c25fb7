"""The embedded designrun of ``designrun-runner-check``: a real server for one run.

A temporary SQLite database migrated with the project's own migrations, local storage in a
temporary folder, no runner backend (the kit starts the runner itself), a short
``RUNNER_TOKEN_TTL`` when the profile asks for one, and werkzeug's threaded HTTP/1.1 server on a
free loopback port with the fault injector in front of the app.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from designrun.conformance.faults import FaultPlan
from designrun.conformance.injector import FaultInjector

HOST = "127.0.0.1"


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the scorecard is the record."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return

    def log(self, type: str, message: str, *args: Any) -> None:
        return


@dataclass
class StoredEvent:
    sequence: int
    key: str | None
    event_type: str
    message: str | None
    metadata: dict[str, Any]
    id: str


@dataclass
class StoredArtifact:
    id: str
    key: str | None
    storage_key: str
    size_bytes: int | None


@dataclass
class RunState:
    status: str
    progress: float
    error: str | None
    events: list[StoredEvent]
    artifacts: list[StoredArtifact]


class EmbeddedServer:
    """One embedded designrun with one user and one run; ``start()`` / ``stop()``."""

    def __init__(self, workdir: Path, plan: FaultPlan, token_ttl: int) -> None:
        from designrun import create_app

        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        instance = workdir / "instance"
        self.secret = secrets.token_urlsafe(48)
        self.app: Flask = create_app(
            {
                "INSTANCE_PATH": str(instance),
                "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(workdir / "designrun.db"),
                "STORAGE_BACKEND": "local",
                "STORAGE_LOCAL_DIR": str(workdir / "artifacts"),
                "RUNNER_BACKEND": "none",  # the kit starts the runner under test itself
                "RUNNER_TOKEN_TTL": token_ttl,
                "RUNNER_AUTH_SECRET": self.secret,
                "SECRET_KEY": secrets.token_urlsafe(48),
                "EXPO_PUBLIC_WORKER_ORIGIN": None,
            }
        )
        self.injector = FaultInjector(self.app.wsgi_app, plan, self.secret)
        self.app.wsgi_app = self.injector  # type: ignore[method-assign]
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.account_id: uuid.UUID | None = None
        self.run_id: uuid.UUID | None = None

    def start(self) -> EmbeddedServer:
        """Migrate the database and start serving on a free loopback port."""
        self._migrate()
        self._server = make_server(HOST, 0, self.app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://{HOST}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="designrun-check-server", daemon=True
        )
        self._thread.start()
        return self

    def _migrate(self) -> None:
        from flask_migrate import upgrade

        # Alembic's env.py configures logging from alembic.ini (handlers on the root logger):
        # put the process's logging back as it was, so the scorecard stays the only output.
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        logging.disable(logging.INFO)  # its "Running upgrade …" lines
        try:
            with self.app.app_context():
                upgrade()
        finally:
            logging.disable(logging.NOTSET)
            root.handlers[:] = handlers
            root.setLevel(level)
            logging.getLogger("alembic").handlers.clear()

    def stop(self) -> None:
        """Stop serving and release the database."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        from designrun.extensions import db

        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()

    def create_run(self, prompt: str, config: dict[str, Any]) -> dict[str, Any]:
        """Create a user and a queued run; return the job request (API.md § job request)."""
        from designrun.auth import runner_tokens
        from designrun.services import accounts, runs

        with self.app.app_context():
            user = accounts.create_user(
                f"check-{uuid.uuid4().hex[:8]}@designrun.invalid", secrets.token_urlsafe(16), None
            )
            run = runs.create_run(user.account_id, prompt, config, self.url)
            self.account_id, self.run_id = user.account_id, run.id
            token, _ = runner_tokens.mint(self.secret, run.id, self.app.config["RUNNER_TOKEN_TTL"])
        return {
            "runId": str(run.id),
            "accountId": str(user.account_id),
            "prompt": prompt,
            "config": config,
            "callbackUrl": f"{self.url}/api/runner/runs/{run.id}",
            "runnerSecret": token,
            "runnerToken": token,
        }

    def cancel(self) -> str:
        """Cancel the run as its user would; return the status it has afterwards.

        Uses the lifecycle service's ``cancel_run`` when the project has it, else moves the run
        to ``cancelled`` through the state machine directly (what cancelling amounts to).
        """
        from designrun.errors import ApiError
        from designrun.services import runs

        assert self.account_id is not None and self.run_id is not None  # noqa: S101
        with self.app.app_context():
            cancel_run = getattr(runs, "cancel_run", None)
            try:
                if cancel_run is not None:
                    cancel_run(self.account_id, self.run_id)
                else:
                    runs.apply_status(self.run_id, "cancelled", None, None)
            except ApiError:
                pass  # already finished: the state below says how
            return runs.run_status(self.run_id)

    def progress(self) -> tuple[str, float]:
        """The run's status and progress now."""
        from designrun.extensions import db
        from designrun.models import Run

        with self.app.app_context():
            row = db.session.execute(
                select(Run.status, Run.progress).where(Run.id == self.run_id)
            ).one()
            db.session.remove()
            return row.status, row.progress

    def state(self) -> RunState:
        """What the server stored for the run: status, events in order, artifacts."""
        from designrun.extensions import db
        from designrun.models import Artifact, Run, RunEvent

        with self.app.app_context():
            run = db.session.scalar(select(Run).where(Run.id == self.run_id))
            assert run is not None  # noqa: S101
            events = [
                StoredEvent(
                    e.sequence,
                    e.idempotency_key,
                    e.event_type,
                    e.message,
                    dict(e.metadata_ or {}),
                    str(e.id),
                )
                for e in db.session.scalars(
                    select(RunEvent)
                    .where(RunEvent.run_id == self.run_id)
                    .order_by(RunEvent.sequence)
                )
            ]
            artifacts = [
                StoredArtifact(str(a.id), a.idempotency_key, a.storage_key, a.size_bytes)
                for a in db.session.scalars(
                    select(Artifact)
                    .where(Artifact.run_id == self.run_id)
                    .order_by(Artifact.created_at, Artifact.id)
                )
            ]
            state = RunState(run.status, run.progress, run.error, events, artifacts)
            db.session.remove()
            return state
