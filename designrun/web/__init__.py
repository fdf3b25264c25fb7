"""The built-in web pages under ``/`` (STYLE.md: pages are a client of the services).

Server-rendered Jinja templates (autoescaped), plain JavaScript with ``EventSource`` and our own
CSS, all served by the app (``/assets``): no CDN, no build step. Views call the same service
functions as ``api/`` with the same scoping (another account's run is a 404 page); templates run
no queries. Page forms are POSTs checked against the Origin header and a per-session CSRF token.
"""

from __future__ import annotations

from flask import Blueprint, Flask

web = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)


def register_web(app: Flask) -> None:
    """Register the pages blueprint (its routes live in the modules imported here)."""
    # Imported for their decorators, which run once per process (before the first registration).
    from designrun.web import account_pages, common, preview, run_pages  # noqa: F401

    app.register_blueprint(web)
