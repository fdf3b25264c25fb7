"""What every page shares: who is signed in, the CSRF token, security headers, error pages."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.exceptions import HTTPException

from designrun.api.serializers import timestamp
from designrun.auth.sessions import origin_allowed
from designrun.errors import ApiError, NotFoundError

F = TypeVar("F", bound=Callable[..., Any])

# Pages load scripts, styles and images from this origin only; previews are framed from it.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class PageError(Exception):
    """A page-level refusal (bad form origin, bad CSRF token) rendered as an error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def account_id() -> uuid.UUID | None:
    """The signed-in user's account id, or None (cookie sessions, as /api/auth sets them)."""
    if not current_user.is_authenticated:
        return None
    value: uuid.UUID = current_user.account_id
    return value


def signed_in(view: F) -> F:
    """Send a signed-out visitor to the sign-in page, coming back here afterwards."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if account_id() is None:
            return redirect(url_for("web.sign_in", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def csrf_token() -> str:
    """The signed-in session's form token (an HMAC of the session id: nothing is stored)."""
    record = getattr(g, "user_session", None)
    if record is None:
        return ""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"csrf|{record.id}".encode(), hashlib.sha256).hexdigest()


def check_form() -> None:
    """A page POST must come from our own origin and, when signed in, carry the CSRF token."""
    if not origin_allowed(request):
        raise PageError(403, "This form was sent from another site and was refused.")
    account_id()  # loads the session (g.user_session) if the request carries one
    if getattr(g, "user_session", None) is not None:
        sent = request.form.get("csrf_token", "")
        if not hmac.compare_digest(sent, csrf_token()):
            raise PageError(403, "The form expired. Reload the page and try again.")


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in (never another site: no open redirect)."""
    if not target:
        return url_for("web.runs_list")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("web.runs_list")
    if "\\" in target:
        return url_for("web.runs_list")
    return target


def human_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def duration(start: datetime | None, end: datetime | None) -> str | None:
    if start is None or end is None:
        return None
    seconds = max(0, int((end - start).total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


def error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, message=message), status


def _install(blueprint: Blueprint) -> None:
    """Template helpers, headers and error pages of the pages blueprint."""

    @blueprint.app_template_global("csrf_token")
    def _csrf_token() -> str:
        return csrf_token()

    @blueprint.app_template_filter("timestamp")
    def _timestamp(value: datetime | None) -> str:
        return timestamp(value) or ""

    blueprint.add_app_template_filter(human_size, "size")

    @blueprint.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @blueprint.errorhandler(PageError)
    def _page_error(error: PageError) -> tuple[str, int]:
        return error_page(error.status, error.message)

    @blueprint.errorhandler(NotFoundError)
    def _not_found(error: NotFoundError) -> tuple[str, int]:
        return error_page(404, "There is no such page, or it belongs to another account.")

    @blueprint.errorhandler(ApiError)
    def _api_error(error: ApiError) -> tuple[str, int]:
        return error_page(error.status, error.message)

    @blueprint.errorhandler(404)
    def _routing_404(error: HTTPException) -> tuple[str, int]:
        return error_page(404, "There is no such page, or it belongs to another account.")


from designrun.web import web  # noqa: E402  (the blueprint this module equips)

_install(web)
