"""Helpers for the trigger tests: app config for the fake Daytona, API calls, DB peeks."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from designrun.extensions import db
from designrun.models import Run, Trigger
from tests.factories import bearer, make_user, sign_in

API_KEY = "dk-test-key-0123456789"


def daytona_config(daytona: HTTPServer, **overrides: Any) -> dict[str, Any]:
    """Config pointing the app at the fake Daytona, with fast retries."""
    config: dict[str, Any] = {
        "DAYTONA_API_URL": f"http://127.0.0.1:{daytona.port}",
        "DAYTONA_API_KEY": API_KEY,
        "TRIGGER_BACKOFF_BASE": 0.01,
        "TRIGGER_TIMEOUT": 5,
    }
    config.update(overrides)
    return config


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released): connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def user_session(app: Flask) -> tuple[FlaskClient, str]:
    """A client and the bearer session token of a new user."""
    client = app.test_client()
    token = sign_in(client, make_user(app))
    return client, token


def create_run(
    client: FlaskClient, token: str, base_url: str | None = None, **body: Any
) -> dict[str, Any]:
    """POST /api/design/runs (bearer session) and return the created Run."""
    body.setdefault("prompt", "a landing page for a bakery")
    kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
    r = client.post("/api/design/runs", json=body, headers=bearer(token), **kwargs)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["run"]


def get_run(client: FlaskClient, token: str, run_id: str) -> dict[str, Any]:
    r = client.get(f"/api/design/runs/{run_id}", headers=bearer(token))
    assert r.status_code == 200, r.get_json()
    return r.get_json()["run"]


def get_events(client: FlaskClient, token: str, run_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/api/design/runs/{run_id}/events", headers=bearer(token))
    assert r.status_code == 200, r.get_json()
    return r.get_json()["events"]


def trigger_rows(app: Flask) -> list[Trigger]:
    """Every trigger row (detached copies)."""
    with app.app_context():
        try:
            rows = list(db.session.scalars(select(Trigger)))
            db.session.expunge_all()
            return rows
        finally:
            db.session.remove()


def update_trigger(app: Flask, run_id: str, **values: Any) -> None:
    """Rewrite a trigger row's fields, e.g. to fake what a crashed process left behind."""
    with app.app_context():
        try:
            trigger = db.session.scalar(select(Trigger).where(Trigger.run_id == uuid.UUID(run_id)))
            assert trigger is not None
            for name, value in values.items():
                setattr(trigger, name, value)
            db.session.commit()
        finally:
            db.session.remove()


def run_row(app: Flask, run_id: str) -> Run | None:
    with app.app_context():
        try:
            run = db.session.get(Run, uuid.UUID(run_id))
            db.session.expunge_all()
            return run
        finally:
            db.session.remove()


def jobs(daytona: HTTPServer) -> list[dict[str, Any]]:
    """The JSON bodies Daytona received, in order."""
    return [request.get_json() for request, _ in daytona.log]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
