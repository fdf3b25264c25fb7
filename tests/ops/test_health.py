"""docs/operations.md § Health: /livez and /readyz (database, migrations, storage).

Tests that build an app on another database ask for ``app`` first: the fixture's teardown
empties the tables through the first app it built.
"""

from __future__ import annotations

import os

import pytest
from flask_migrate import upgrade

from designrun.extensions import db


def test_livez_is_200_and_checks_nothing_else(app, app_factory):
    app = app_factory(SQLALCHEMY_DATABASE_URI="sqlite:////nonexistent-designrun-dir/x/db.sqlite")
    r = app.test_client().get("/livez")
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"ok": True}


def test_readyz_is_200_with_every_check_ok(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {
        "ok": True,
        "checks": {"database": "ok", "migrations": "ok", "storage": "ok"},
    }


def _readyz(app):
    r = app.test_client().get("/readyz")
    return r.status_code, r.get_json()


def test_readyz_names_database_then_migrations_and_recovers_without_restart(
    app, app_factory, tmp_path
):
    """Database unreachable → 503 database; reachable but empty → 503 migrations; migrated → 200.

    The same app object throughout: recovery needs no restart.
    """
    folder = tmp_path / "later"
    ready_app = app_factory(SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder}/designrun.db")
    status, body = _readyz(ready_app)
    assert status == 503, body
    assert body["code"] == "not_ready" and body["ok"] is False
    assert body["failing"] == ["database"], body
    assert body["checks"]["database"].startswith("failed"), body
    assert "database" in body["error"]

    folder.mkdir()  # the database comes up (empty)
    status, body = _readyz(ready_app)
    assert status == 503, body
    assert body["failing"] == ["migrations"], body

    with ready_app.app_context():
        upgrade()
    status, body = _readyz(ready_app)
    assert status == 200, body
    with ready_app.app_context():
        db.engine.dispose()


def test_readyz_says_migrations_behind_when_the_schema_is_older(app, app_factory, tmp_path):
    ready_app = app_factory(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/old.db")
    with ready_app.app_context():
        upgrade(revision="0002")
        status, body = _readyz(ready_app)
        db.engine.dispose()
    assert status == 503, body
    assert body["failing"] == ["migrations"]
    assert "behind" in body["checks"]["migrations"]


def test_readyz_is_503_while_storage_is_unwritable_and_200_after(app_factory, tmp_path):
    blocked = tmp_path / "artifacts"
    blocked.write_text("a file where the storage folder should be")  # root ignores chmod
    app = app_factory(STORAGE_LOCAL_DIR=str(blocked))
    status, body = _readyz(app)
    assert status == 503, body
    assert body["failing"] == ["storage"], body
    os.unlink(blocked)
    status, body = _readyz(app)
    assert status == 200, body
    assert not [p for p in blocked.rglob("*") if p.is_file()], "the probe object is deleted"


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="PostgreSQL only")
def test_readyz_is_503_when_postgresql_is_unreachable(app, app_factory):
    app = app_factory(SQLALCHEMY_DATABASE_URI="postgresql+psycopg://postgres@127.0.0.1:1/x")
    status, body = _readyz(app)
    assert status == 503, body
    assert body["failing"] == ["database"], body
