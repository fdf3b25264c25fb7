"""The one start-up log line that says what a server runs with (database, storage, runner).

A self-hoster sees at a glance which database (never its credentials), which storage, which
runner backend and which callback origin are in use. gunicorn's master logs it once
(gunicorn.conf.py); other serving modes log it when their background work starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy.engine import URL, make_url

log = logging.getLogger("designrun")

# Set by the process that logged the line, so that the processes it forks (gunicorn workers)
# do not log it again.
LOGGED_MARKER = "DESIGNRUN_STARTUP_LOGGED"


def database(url: str) -> str:
    """The database URL without user, password or query (which may carry a password)."""
    try:
        parsed = make_url(url)
    except Exception:  # a URL SQLAlchemy cannot parse is reported by its scheme only
        return url.split(":", 1)[0]
    bare = URL.create(
        parsed.drivername, host=parsed.host, port=parsed.port, database=parsed.database
    )
    return bare.render_as_string(hide_password=True)


def callback_origin(config: Mapping[str, Any], backend: str | None) -> str:
    """Where runners of ``backend`` call back, as far as the configuration says."""
    if backend == "local":
        # triggers/local.py: LOCAL_RUNNER_ORIGIN, else the address this server is bound to.
        origin = config.get("LOCAL_RUNNER_ORIGIN") or config.get("LOCAL_RUNNER_BIND_ORIGIN")
        return str(origin or "this server's bind address")
    if config.get("EXPO_PUBLIC_WORKER_ORIGIN"):
        return str(config["EXPO_PUBLIC_WORKER_ORIGIN"])
    return "each create request's origin"


def summary(config: Mapping[str, Any]) -> str:
    """One line: database, storage, runner backend and its callback origin."""
    from designrun.triggers import selected_backend

    if config["STORAGE_BACKEND"] == "s3":
        storage = f"s3 bucket {config['S3_BUCKET']}"
        if config.get("S3_ENDPOINT_URL"):
            storage += f" at {config['S3_ENDPOINT_URL']}"
    else:
        storage = f"local {config['STORAGE_LOCAL_DIR']}"
    backend = selected_backend(config)
    runner = f"runner {backend or 'none'}"
    if backend is not None:
        runner += f" (callback {callback_origin(config, backend)})"
    return (
        f"designrun: serving with database {database(config['SQLALCHEMY_DATABASE_URI'])}; "
        f"storage {storage}; {runner}"
    )


def log_once(app: Flask) -> None:
    """Log the summary unless this process (or the one that forked it) already did."""
    if os.environ.get(LOGGED_MARKER):
        return
    os.environ[LOGGED_MARKER] = "1"
    log.info("%s", summary(app.config))
