"""Plain builder functions for test data (no fixtures): users, runs, tokens, sign-in."""

from __future__ import annotations

import functools
import itertools
import uuid
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from designrun.auth import runner_tokens
from designrun.auth.passwords import hash_password
from designrun.extensions import db
from designrun.models import Account, Run, RunStatus, User
from designrun.models.types import utcnow, uuid7

PASSWORD = "correct horse battery"
_counter = itertools.count(1)


@functools.cache
def _password_hash() -> str:
    # Hashing is deliberately slow (scrypt): compute the factories' one password once.
    return hash_password(PASSWORD)


def make_user(app: Flask, email: str | None = None, name: str = "Test User") -> User:
    """A user with a personal account, password ``PASSWORD``."""
    with app.app_context():
        account = Account(id=uuid7(), name=name)
        user = User(
            id=uuid7(),
            account=account,
            email=email or f"user{next(_counter)}-{uuid.uuid4().hex[:6]}@example.com",
            name=name,
            password_hash=_password_hash(),
        )
        db.session.add_all([account, user])
        db.session.commit()
        db.session.expunge_all()
        return user


def make_run(app: Flask, user: User, status: str = "queued", **fields: Any) -> Run:
    """A run of the user's account, in ``status`` (timestamps set as the state machine would)."""
    now = utcnow()
    with app.app_context():
        run = Run(
            id=uuid7(),
            account_id=user.account_id,
            prompt=fields.pop("prompt", "a landing page for a bakery"),
            config=fields.pop("config", {}),
            status=status,
            progress=fields.pop("progress", 1.0 if RunStatus(status).terminal else 0.0),
            created_at=fields.pop("created_at", now),
            updated_at=now,
            started_at=now if status != "queued" else None,
            completed_at=now if RunStatus(status).terminal else None,
            **fields,
        )
        db.session.add(run)
        db.session.commit()
        db.session.expunge_all()
        return run


def runner_token(app: Flask, run_id: uuid.UUID | str, ttl: int = 3600) -> str:
    token, _ = runner_tokens.mint(app.config["RUNNER_AUTH_SECRET"], uuid.UUID(str(run_id)), ttl)
    return token


def runner_headers(app: Flask, run: Run | uuid.UUID | str) -> dict[str, str]:
    run_id = run.id if isinstance(run, Run) else run
    return {"Authorization": f"Bearer {runner_token(app, run_id)}"}


def legacy_headers(app: Flask) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.config['RUNNER_AUTH_SECRET']}"}


def sign_in(client: FlaskClient, user: User, password: str = PASSWORD) -> str:
    """Sign the user in through the API (the client keeps the cookie); return the token."""
    response = client.post(
        "/api/auth/sign-in/email", json={"email": user.email, "password": password}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
