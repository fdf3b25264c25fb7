"""Shared fixtures (kept few and small; data comes from tests/factories.py).

- ``database_url``: per test session (per xdist worker), a fresh SQLite file, or a fresh
  PostgreSQL database created beside ``TEST_DATABASE_URL`` and dropped at the end.
  Migrated once with ``flask db upgrade``'s own code path.
- ``app`` / ``client``: a new app per test on that database, with a tmp instance folder.
- after each test every table is emptied in reverse dependency order. (No SAVEPOINT
  rollback: the dispatcher threads and gunicorn tests use their own connections.)
- an autouse fixture clears designrun's environment variables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from designrun.config import ENVIRONMENT


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def _create_pg_database(base: str, name: str) -> str:
    url = make_url(base).set(drivername="postgresql+psycopg")
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(base: str, name: str) -> None:
    url = make_url(base).set(drivername="postgresql+psycopg")
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database for this test session (or xdist worker)."""
    base = os.environ.get("TEST_DATABASE_URL")
    pg_name = None
    if base:
        pg_name = f"designrun_test_{uuid.uuid4().hex[:12]}"
        url = _create_pg_database(base, pg_name)
    else:
        url = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "designrun.db")
    app = _make_app(url, str(tmp_path_factory.mktemp("migrate-instance")))
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        from designrun.extensions import db

        db.engine.dispose()
    yield url
    if pg_name is not None:
        _drop_pg_database(base or "", pg_name)


def _make_app(url: str, instance: str, **overrides: Any) -> Flask:
    from designrun import create_app

    config = {
        "TESTING": True,
        "INSTANCE_PATH": instance,
        "SQLALCHEMY_DATABASE_URI": url,
        "STORAGE_LOCAL_DIR": os.path.join(instance, "artifacts"),
        # No runner by default (the built-in local one would start subprocesses); tests of a
        # backend ask for it: app_factory(RUNNER_BACKEND="local") or DAYTONA_API_URL=….
        "RUNNER_BACKEND": None if overrides.get("DAYTONA_API_URL") else "none",
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app_factory(database_url: str, tmp_path: Any) -> Iterator[Any]:
    """Build an app on the test database with extra config overrides: ``app_factory(**cfg)``."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = _make_app(database_url, str(tmp_path / f"instance{len(apps)}"), **overrides)
        apps.append(app)
        return app

    yield build
    from designrun.extensions import db
    from designrun.services import streams
    from designrun.triggers import dispatcher

    for app in apps:
        dispatcher.stop(app)
        streams.stop(app, wait=True)
    if apps:
        with apps[0].app_context():
            _empty_tables(db)
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _empty_tables(db: Any) -> None:
    db.session.remove()
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def app(app_factory: Any) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def app_ctx(app: Flask) -> Iterator[Flask]:
    """An application context, for tests that call services or models directly."""
    with app.app_context():
        yield app
