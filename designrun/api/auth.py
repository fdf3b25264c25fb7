"""Better Auth-compatible e-mail/password routes (API.md § Users: sessions).

Success bodies follow Better Auth ({token, user}, {success: true}, {session, user} or null);
errors use the error envelope plus ``message`` (added by api/errors.py for /api/auth paths).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask_login import current_user

from designrun.api import serializers
from designrun.api.parsing import parse_body
from designrun.api.schemas import SignIn, SignUp
from designrun.auth.guards import check_cookie_origin, session_token_from
from designrun.auth.sessions import clear_session_cookie, set_session_cookie
from designrun.services import accounts

auth_api = Blueprint("auth_api", __name__, url_prefix="/api/auth")


@auth_api.before_request
def check_origin() -> None:
    """Cookie-carrying writes from a foreign Origin are refused (login CSRF included)."""
    check_cookie_origin()


def client_ip() -> str:
    return (request.remote_addr or "unknown")[:64]


def _signed_in(result: accounts.SignedIn) -> Response:
    response = jsonify({"token": result.token, "user": serializers.user(result.user)})
    set_session_cookie(response, request, result.token, current_app.config["SESSION_TTL"])
    return response


@auth_api.post("/sign-up/email")
def sign_up() -> Response:
    body = parse_body(SignUp)
    result = accounts.sign_up(
        body.email, body.password, body.name, client_ip(), request.headers.get("User-Agent")
    )
    return _signed_in(result)


@auth_api.post("/sign-in/email")
def sign_in() -> Response:
    body = parse_body(SignIn)
    result = accounts.sign_in(
        body.email, body.password, client_ip(), request.headers.get("User-Agent")
    )
    return _signed_in(result)


@auth_api.post("/sign-out")
def sign_out() -> Response:
    token, _ = session_token_from(request)
    accounts.sign_out(token)
    response = jsonify({"success": True})
    clear_session_cookie(response, request)
    return response


@auth_api.get("/get-session")
def get_session() -> Response:
    if not current_user.is_authenticated:
        return jsonify(None)
    record = g.user_session
    body: dict[str, Any] = {
        "session": serializers.session(record),
        "user": serializers.user(current_user),
    }
    return jsonify(body)
