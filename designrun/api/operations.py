"""Operations endpoints (docs/operations.md): /livez, /readyz and /metrics.

Outside /api on purpose: load balancers, orchestrators and Prometheus expect them at the root,
and none of them carries a session. /livez checks nothing but the process; /readyz checks what
a request needs (database, schema, storage) and names what fails, so an operator reading the
load balancer's log knows where to look.
"""

from __future__ import annotations

import hmac
import io
import logging
import os
import socket
from functools import cache
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import func, select, text

from designrun.auth.sessions import bearer_token
from designrun.extensions import db

log = logging.getLogger(__name__)

operations_api = Blueprint("operations_api", __name__)

# The readiness probe's object: one per host and process, deleted right after it is written.
_PROBE_KEY = "_readyz/{host}-{pid}"


@operations_api.get("/livez")
def livez() -> Response:
    """200 while the process serves requests; checks nothing else (a restart would not help)."""
    return jsonify({"ok": True})


@cache
def _code_heads() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    from designrun import MIGRATIONS_DIR

    return frozenset(ScriptDirectory(MIGRATIONS_DIR).get_heads())


@cache
def _known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    from designrun import MIGRATIONS_DIR

    return frozenset(s.revision for s in ScriptDirectory(MIGRATIONS_DIR).walk_revisions())


def _check_database() -> tuple[str, str]:
    """(database, migrations) results; the schema is read on the same connection."""
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            try:
                revisions = set(conn.scalars(text("SELECT version_num FROM alembic_version")))
            except Exception:
                return "ok", "failed: no schema (run flask db upgrade)"
    except Exception as exc:
        return f"failed: {type(exc).__name__}", "unknown"
    if revisions == set(_code_heads()):
        return "ok", "ok"
    if revisions and not revisions <= _known_revisions():
        # A newer release migrated the database (a rolling upgrade): migrations are written
        # to be compatible with the release before them (docs/deploy.md), so keep serving.
        return "ok", "ok (the database is ahead of this release)"
    return "ok", "failed: the database is behind this release (run flask db upgrade)"


def _check_storage() -> str:
    from designrun.storage import get_storage

    key = _PROBE_KEY.format(host=socket.gethostname(), pid=os.getpid())
    try:
        storage = get_storage()
        storage.save_stream(key, io.BytesIO(b"ok"), "text/plain")
        storage.delete(key)
    except Exception as exc:
        return f"failed: {type(exc).__name__}"
    return "ok"


@operations_api.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when the database answers, its schema is current and storage is writable, else 503.

    Each check is run on every call (nothing cached): a host that recovers is ready again
    without a restart.
    """
    database, migrations = _check_database()
    checks = {"database": database, "migrations": migrations, "storage": _check_storage()}
    if all(result.startswith("ok") for result in checks.values()):
        return jsonify({"ok": True, "checks": checks}), 200
    failing = [name for name, result in checks.items() if result.startswith("failed")]
    log.warning("not ready: %s", ", ".join(f"{n}: {checks[n]}" for n in failing))
    body = {
        "ok": False,
        "error": "not ready: " + ", ".join(failing),
        "code": "not_ready",
        "failing": failing,
        "checks": checks,
    }
    return jsonify(body), 503


def _pending_triggers() -> str:
    """The deployment's pending triggers (one query, per scrape, never per request)."""
    from designrun.models import Trigger

    try:
        count = db.session.scalar(select(func.count()).select_from(Trigger)) or 0
    except Exception as exc:
        log.warning("metrics: pending triggers unknown (%s)", type(exc).__name__)
        return ""
    finally:
        db.session.remove()
    return (
        "# HELP designrun_triggers_pending Runner triggers not sent yet (whole deployment)\n"
        "# TYPE designrun_triggers_pending gauge\n"
        f"designrun_triggers_pending {float(count)}\n"
    )


@operations_api.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, aggregated over this host's gunicorn workers.

    Open unless METRICS_TOKEN is set; then it needs ``Authorization: Bearer <METRICS_TOKEN>``.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    expected = current_app.config.get("METRICS_TOKEN")
    if expected:
        given = bearer_token(request) or ""
        if not hmac.compare_digest(given.encode(), str(expected).encode()):
            response = jsonify(
                {
                    "ok": False,
                    "error": "metrics need the METRICS_TOKEN bearer",
                    "code": "unauthorized",
                }
            )
            response.status_code = 401
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
    registry: Any = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    body = generate_latest(registry).decode() + _pending_triggers()
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)
