"""Session renewal (issue 6 items 12 and 13).

- 13: when a session is renewed on use, a cookie-authenticated answer re-sets the cookie with
  the new lifetime (a browser would otherwise drop an active user's session SESSION_TTL after
  sign-in). SESSION_TTL accepts any positive number of seconds.
- 12: a renewal racing a sign-out (the row vanishes between the read and the write) is an
  anonymous caller, never a 500.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from designrun.config import ConfigError
from designrun.extensions import db
from designrun.models import UserSession
from designrun.models.types import utcnow
from tests.factories import bearer, make_user, sign_in

COOKIE = "better-auth.session_token"


def _age_sessions(app, seconds):
    """Make every session look as if it was last renewed ``seconds`` ago."""
    with app.app_context():
        stale = utcnow() - timedelta(seconds=seconds)
        db.session.execute(update(UserSession).values(updated_at=stale))
        db.session.commit()


def _session_cookies(response):
    return [c for c in response.headers.getlist("Set-Cookie") if c.startswith(COOKIE + "=")]


def test_renewal_re_sets_the_cookie_with_the_full_lifetime(app, client):
    token = sign_in(client, make_user(app))
    _age_sessions(app, 2 * 86400)
    r = client.get("/api/design/runs")
    assert r.status_code == 200
    cookies = _session_cookies(r)
    assert len(cookies) == 1, r.headers
    assert cookies[0].startswith(f"{COOKIE}={token};")
    assert f"Max-Age={app.config['SESSION_TTL']}" in cookies[0]
    assert "HttpOnly" in cookies[0] and "SameSite=Lax" in cookies[0]


def test_no_cookie_without_renewal_nor_for_bearer_clients(app, client):
    token = sign_in(client, make_user(app))
    assert _session_cookies(client.get("/api/design/runs")) == []
    _age_sessions(app, 2 * 86400)
    r = app.test_client().get("/api/design/runs", headers=bearer(token))
    assert r.status_code == 200
    assert _session_cookies(r) == []


def test_get_session_renewal_re_sets_the_cookie(app, client):
    sign_in(client, make_user(app))
    _age_sessions(app, 2 * 86400)
    r = client.get("/api/auth/get-session")
    assert r.get_json()["session"]
    assert len(_session_cookies(r)) == 1


def test_sign_out_clears_the_cookie_even_when_the_session_was_due_for_renewal(app, client):
    sign_in(client, make_user(app))
    _age_sessions(app, 2 * 86400)
    r = client.post("/api/auth/sign-out")
    cookies = _session_cookies(r)
    assert len(cookies) == 1, cookies
    assert "Max-Age=0" in cookies[0] or "Expires=Thu, 01 Jan 1970" in cookies[0], cookies


@pytest.mark.parametrize("ttl", ["1", "30", "59"])
def test_session_ttl_accepts_any_positive_number_of_seconds(app_factory, monkeypatch, ttl):
    monkeypatch.setenv("SESSION_TTL", ttl)
    app = app_factory()
    assert app.config["SESSION_TTL"] == int(ttl)
    client = app.test_client()
    sign_in(client, make_user(app))
    assert client.get("/api/design/runs").status_code == 200


@pytest.mark.parametrize("ttl", ["0", "-5"])
def test_session_ttl_must_be_positive(app_factory, monkeypatch, ttl):
    monkeypatch.setenv("SESSION_TTL", ttl)
    with pytest.raises(ConfigError, match="SESSION_TTL"):
        app_factory()


@pytest.fixture
def sign_out_races_the_renewal(app):
    """Delete the session row just before the renewal's UPDATE reaches the database.

    The delete runs on the renewing connection itself (inside its transaction), so the race is
    the same on SQLite, whose writers queue, and on PostgreSQL.
    """
    with app.app_context():
        engine = db.engine

    def before_execute(conn, cursor, statement, parameters, context, executemany):
        if armed and statement.lstrip().upper().startswith("UPDATE USER_SESSIONS"):
            armed.clear()
            cursor.execute("DELETE FROM user_sessions")

    armed: list[bool] = []
    event.listen(engine, "before_cursor_execute", before_execute)
    yield lambda: armed.append(True)
    event.remove(engine, "before_cursor_execute", before_execute)


@pytest.mark.parametrize("via", ["bearer", "cookie"])
def test_renewal_racing_a_sign_out_is_anonymous_not_500(
    app, client, sign_out_races_the_renewal, via
):
    token = sign_in(client, make_user(app))
    _age_sessions(app, 2 * 86400)
    sign_out_races_the_renewal()
    if via == "bearer":
        r = app.test_client().get("/api/design/runs", headers=bearer(token))
        assert r.status_code == 401, r.get_data(as_text=True)
    else:
        r = client.get("/api/auth/get-session")
        assert r.status_code == 200 and r.get_json() is None, r.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(UserSession)).all() == []
