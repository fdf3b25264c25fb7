"""designrun: a self-hostable service that runs AI design runs.

create_app() only wires things together: configuration → extensions → blueprints → errors →
CLI. It opens no connection, runs no migration and starts no thread (wsgi.py starts the trigger
dispatcher), so the service starts even while the database is down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

# Nothing server-side is imported at module level: designrun.runner and designrun.agents run in
# runner images and must not pull in Flask or SQLAlchemy through this package.

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app. Raises config.ConfigError for a bad setting (one-line message)."""
    from flask import Flask

    from designrun.config import finish_config, load_config

    overrides = dict(overrides or {})
    instance_path = overrides.pop("INSTANCE_PATH", None) or os.environ.get(
        "DESIGNRUN_INSTANCE_PATH"
    )
    app = Flask(
        __name__,
        instance_path=os.path.abspath(instance_path) if instance_path else None,
        instance_relative_config=True,
    )
    app.config.update(load_config(app.instance_path))
    app.config.from_pyfile("config.py", silent=True)
    app.config.update(overrides)
    finish_config(app.config, app.instance_path)
    _engine_options(app)

    from designrun import models  # noqa: F401  (register the tables on the metadata)
    from designrun.auth import guards  # noqa: F401  (registers the session request loader)
    from designrun.auth.sessions import NoFlaskSession
    from designrun.extensions import db, login_manager, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    login_manager.init_app(app)
    app.session_interface = NoFlaskSession()

    from designrun import observability
    from designrun.api import register_api
    from designrun.cli import register_cli

    observability.init_app(app)  # first: its request id and timer wrap every other hook
    register_api(app)
    register_cli(app)
    return app


def _engine_options(app: Flask) -> None:
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # The sqlite3 busy timeout also covers connect-time locking; pragmas: database.py.
        options.setdefault("connect_args", {"timeout": 30})
    else:
        # A connection the server dropped (restart, failover) is replaced, not reused.
        options.setdefault("pool_pre_ping", True)
        options.setdefault("connect_args", {"connect_timeout": 5})
