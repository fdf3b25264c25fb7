"""Sign up, sign in, sign out: the same sessions and cookie as /api/auth (services/accounts)."""

from __future__ import annotations

from typing import Any, cast

from flask import Response, current_app, g, render_template, request, url_for
from flask import redirect as _redirect

from designrun.auth.guards import session_token_from
from designrun.auth.sessions import clear_session_cookie, set_session_cookie
from designrun.errors import ApiError
from designrun.services import accounts
from designrun.web import web
from designrun.web.common import account_id, check_form, safe_next

FIELD_LIMIT = 1024


def redirect(location: str, code: int = 302) -> Response:
    """flask.redirect, typed as the app's Response class (the session cookie helpers take it)."""
    return cast(Response, _redirect(location, code=code))


def _client_ip() -> str:
    return (request.remote_addr or "unknown")[:64]


def _field(name: str) -> str:
    return request.form.get(name, "")[:FIELD_LIMIT]


def _signed_in(result: accounts.SignedIn, target: str) -> Response:
    response = redirect(safe_next(target), code=303)
    set_session_cookie(response, request, result.token, current_app.config["SESSION_TTL"])
    return response


@web.get("/")
def home() -> Response:
    return redirect(url_for("web.runs_list" if account_id() else "web.sign_in"))


@web.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    target = request.values.get("next", "")
    if request.method == "GET":
        if account_id() is not None:
            return redirect(safe_next(target))
        return render_template("sign_in.html", email="", next=target, error=None)
    check_form()
    email = _field("email")
    try:
        result = accounts.sign_in(
            email, _field("password"), _client_ip(), request.headers.get("User-Agent")
        )
    except ApiError as exc:
        status = exc.status
        message = exc.message
        if exc.status == 401:
            message = "That e-mail and password do not match an account."
        elif exc.status == 429:
            message = "Too many failed attempts. Wait a few minutes and try again."
        elif exc.status == 400:
            message = "Enter your e-mail address and password."
        response = render_template("sign_in.html", email=email, next=target, error=message)
        return response, status, exc.headers
    return _signed_in(result, target)


@web.route("/sign-up", methods=["GET", "POST"])
def sign_up() -> Any:
    target = request.values.get("next", "")
    allowed = bool(current_app.config["ALLOW_SIGNUP"])
    form = {"email": "", "name": ""}
    if request.method == "GET":
        if account_id() is not None:
            return redirect(safe_next(target))
        return render_template("sign_up.html", form=form, next=target, error=None, allowed=allowed)
    check_form()
    form = {"email": _field("email"), "name": _field("name")[:200]}
    try:
        result = accounts.sign_up(
            form["email"],
            _field("password"),
            form["name"] or None,
            _client_ip(),
            request.headers.get("User-Agent"),
        )
    except ApiError as exc:
        message = exc.message
        if exc.code == "user_already_exists":
            message = "An account with this e-mail already exists. Sign in instead."
        elif exc.code == "password_too_short":
            message = "Choose a password of at least 8 characters."
        elif exc.code == "signup_disabled":
            message = "Sign-up is turned off on this server. Ask its operator for an account."
        elif exc.status == 400 and message.startswith("email"):
            message = "Enter a valid e-mail address (like name@example.com)."
        page = render_template(
            "sign_up.html", form=form, next=target, error=message, allowed=allowed
        )
        return page, exc.status
    return _signed_in(result, target)


@web.post("/sign-out")
def sign_out() -> Response:
    check_form()
    token, via = session_token_from(request)
    if via == "cookie":
        accounts.sign_out(token)
    g.pop("user_session", None)
    response = redirect(url_for("web.sign_in"), code=303)
    clear_session_cookie(response, request)
    return response
