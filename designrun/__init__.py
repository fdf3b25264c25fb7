"""designrun: a self-hostable service that runs AI design runs.

create_app() only wires things together: configuration → extensions → blueprints → errors →
CLI. It opens no connection and runs no migration, so the service starts even while the database
is down. It starts no thread either (wsgi.py starts gunicorn workers' background work), except
in the one process ``flask run`` serves from (background.start_under_flask_run).
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
    _trust_proxies(app)

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
    from designrun.web import register_web

    register_web(app)
    register_cli(app)

    from designrun.background import start_under_flask_run

    # `flask run` serves from this process: start its background work (nothing otherwise).
    start_under_flask_run(app)
    return app


def _trust_proxies(app: Flask) -> None:
    """Behind TRUSTED_PROXIES reverse proxies, take the client's address and scheme from
    X-Forwarded-For/-Proto (Werkzeug's ProxyFix; the sign-in limit counts per address).

    The Host is not taken from X-Forwarded-Host: the proxy must pass ``Host`` through.
    """
    hops = int(app.config.get("TRUSTED_PROXIES") or 0)
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def _engine_options(app: Flask) -> None:
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # The sqlite3 busy timeout also covers connect-time locking; pragmas: database.py.
        options.setdefault("connect_args", {"timeout": 30})
    else:
        # A connection the server dropped (restart, failover) is replaced, not reused.
        options.setdefault("pool_pre_ping", True)
        options.setdefault("connect_args", {"connect_timeout": 5})
