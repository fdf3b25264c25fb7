"""Server-side session tokens, the session cookie and the Origin check on cookie writes."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from flask import Flask, Request, Response, current_app
from flask.sessions import NullSession, SessionInterface

# Better Auth's cookie name, so the existing front end keeps working unchanged.
COOKIE_NAME = "better-auth.session_token"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def new_token() -> str:
    """A fresh session token: 256 bits from the OS's CSPRNG."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 of a session token: what the database keeps (a leaked table opens no session)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    """HttpOnly, SameSite=Lax, Secure when the request came over HTTPS (API.md § Users)."""
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max_age,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE_NAME, path="/", httponly=True, samesite="Lax", secure=request.is_secure
    )


def own_origins(request: Request) -> set[str]:
    """The app's own origins: the one the request arrived on, and EXPO_PUBLIC_WORKER_ORIGIN."""
    origins = {request.host_url.rstrip("/").lower()}
    configured = current_app.config.get("EXPO_PUBLIC_WORKER_ORIGIN")
    if configured:
        origins.add(configured.rstrip("/").lower())
    return origins


def origin_allowed(request: Request) -> bool:
    """False for a state-changing request whose Origin is present and foreign.

    ``Origin: null`` (sandboxed frames, some redirects) counts as foreign.
    """
    if request.method not in STATE_CHANGING:
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    trusted: list[Any] = current_app.config.get("TRUSTED_ORIGINS") or []
    return origin in own_origins(request) or origin in {o.lower() for o in trusted}


class NoFlaskSession(SessionInterface):
    """designrun keeps nothing in Flask's signed-cookie session (sessions are server-side rows,
    see above), so none is opened or saved: no ``session`` cookie, no work per request."""

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        return None
