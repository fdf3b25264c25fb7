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

import requests
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
        self._session = ""  # the user's session token (bearer on /api/design/*)
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

    def _user_call(self, path: str, body: dict[str, Any]) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._session}"} if self._session else {}
        return requests.post(f"{self.url}{path}", json=body, headers=headers, timeout=30)

    def create_run(self, prompt: str, config: dict[str, Any]) -> dict[str, Any]:
        """Sign a user up and create a run as that user would (the user API, over HTTP).

        Returns the job request (API.md § The Daytona job request) with a freshly minted
        run-scoped token: the embedded server has no runner backend, the kit is the backend.
        """
        from designrun.auth import runner_tokens

        if not self._session:
            email = f"check-{uuid.uuid4().hex[:8]}@designrun.invalid"
            answer = self._user_call(
                "/api/auth/sign-up/email",
                {"email": email, "password": secrets.token_urlsafe(16), "name": "runner check"},
            )
            answer.raise_for_status()
            self._session = answer.json()["token"]
        answer = self._user_call("/api/design/runs", {"prompt": prompt, "config": config})
        answer.raise_for_status()
        run = answer.json()["run"]
        self.run_id = uuid.UUID(run["id"])
        token, _ = runner_tokens.mint(self.secret, self.run_id, self.app.config["RUNNER_TOKEN_TTL"])
        return {
            "runId": run["id"],
            "accountId": run["accountId"],
            "prompt": prompt,
            "config": config,
            "callbackUrl": f"{self.url}/api/runner/runs/{run['id']}",
            "runnerSecret": token,
            "runnerToken": token,
        }

    def cancel(self) -> str:
        """Cancel the run as its user would (``POST /api/design/runs/:id/cancel``).

        Returns the run's status afterwards: ``cancelled``, or the status it finished with
        (a 409 ``run_finished`` when it got there first).
        """
        answer = self._user_call(f"/api/design/runs/{self.run_id}/cancel", {})
        payload = answer.json()
        if answer.status_code == 200:
            return str(payload["run"]["status"])
        return str(payload.get("runStatus") or payload.get("code"))

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
