"""Who is calling: the session request loader and the user-API guard.

Sessions come from ``Authorization: Bearer <session token>`` (mobile clients) or the session
cookie. Only the cookie is an ambient credential, so only cookie-authenticated writes get the
Origin check (API.md § Details pinned: Origins).
"""

from __future__ import annotations

import uuid

from flask import Request, Response, current_app, g, request
from flask_login import current_user

from designrun.auth.sessions import (
    COOKIE_NAME,
    bearer_token,
    origin_allowed,
    set_session_cookie,
)
from designrun.errors import ForbiddenError, UnauthorizedError
from designrun.extensions import login_manager
from designrun.models import User


def session_token_from(req: Request) -> tuple[str | None, str | None]:
    """(token, "bearer" | "cookie") of the request, or (None, None)."""
    token = bearer_token(req)
    if token is not None:
        return token, "bearer"
    cookie = req.cookies.get(COOKIE_NAME)
    if cookie:
        return cookie, "cookie"
    return None, None


@login_manager.request_loader
def load_user_from_request(req: Request) -> User | None:
    """Resolve the request's session (cookie or bearer) to its user; None when there is none."""
    from designrun.services import accounts

    token, via = session_token_from(req)
    if token is None:
        return None
    record, renewed = accounts.resolve_and_renew_session(token)
    if record is None:
        return None
    g.user_session = record
    g.auth_via = via
    if renewed and via == "cookie":
        g.renewed_cookie_token = token  # re-set by renew_session_cookie with the new lifetime
    return record.user


def renew_session_cookie(response: Response) -> Response:
    """Re-set the session cookie when this request renewed a cookie session (after_request).

    The cookie's Max-Age would otherwise end an active browser session SESSION_TTL after
    sign-in, whatever the server-side renewals. An answer that sets the cookie itself (sign-in,
    sign-out) is left alone.
    """
    token = g.get("renewed_cookie_token")
    if token is None:
        return response
    if any(c.startswith(COOKIE_NAME + "=") for c in response.headers.getlist("Set-Cookie")):
        return response
    set_session_cookie(response, request, token, current_app.config["SESSION_TTL"])
    return response


def check_cookie_origin() -> None:
    """403 for a cookie-carrying state-changing request from a foreign Origin."""
    if bearer_token(request) is None and request.cookies.get(COOKIE_NAME):
        if not origin_allowed(request):
            raise ForbiddenError(
                "cross-origin request refused (Origin is not trusted)", code="origin_not_allowed"
            )


def require_user() -> uuid.UUID:
    """The signed-in user's account id; raises UnauthorizedError/ForbiddenError."""
    if not current_user.is_authenticated:
        raise UnauthorizedError("sign in first (session cookie or bearer session token)")
    check_cookie_origin()
    account_id: uuid.UUID = current_user.account_id
    g.account_id = account_id
    return account_id
