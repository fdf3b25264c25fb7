"""API.md § Users: sessions (Better Auth-compatible routes), and the CLI that creates users."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import PASSWORD, bearer, make_user, sign_in

SIGN_UP = "/api/auth/sign-up/email"
SIGN_IN = "/api/auth/sign-in/email"


def sign_up(client, email="New.User@Example.com ", password="password123", name="New", **kw):
    body = {"email": email, "password": password, "name": name}
    return client.post(SIGN_UP, json=body, **kw)


def session_cookie(response):
    cookies = [c for c in response.headers.getlist("Set-Cookie") if "session_token=" in c]
    assert cookies, response.headers
    return cookies[0]


def test_sign_up_normalises_email_returns_token_user_and_sets_cookie(client):
    r = sign_up(client)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert set(body) == {"token", "user"}
    assert body["user"]["email"] == "new.user@example.com"
    assert body["user"]["name"] == "New"
    assert body["user"]["accountId"]
    cookie = session_cookie(r)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/api/auth/get-session").get_json()["user"]["id"] == body["user"]["id"]


def test_cookie_is_secure_over_https(client):
    r = sign_up(client, base_url="https://designrun.example")
    assert "Secure" in session_cookie(r)


def test_password_is_stored_only_as_a_salted_hash(app, client):
    sign_up(client, email="a@example.com")
    sign_up(client, email="b@example.com")
    from sqlalchemy import select

    from designrun.extensions import db
    from designrun.models import User, UserSession

    with app.app_context():
        hashes = db.session.scalars(select(User.password_hash)).all()
        assert all(h.startswith("scrypt:") and "password123" not in h for h in hashes)
        assert hashes[0] != hashes[1]
        tokens = db.session.scalars(select(UserSession.token_hash)).all()
        assert all(len(t) == 64 for t in tokens)


def test_duplicate_email_is_422_user_already_exists(client):
    sign_up(client, email="dup@example.com")
    r = sign_up(client, email="  DUP@example.com")
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    assert body["code"] == "user_already_exists"
    assert body["ok"] is False and body["message"] == body["error"]


@pytest.mark.parametrize("password", ["", "short", "1234567"])
def test_password_shorter_than_8_is_400(client, password):
    r = sign_up(client, password=password)
    assert r.status_code == 400, r.get_json()
    assert "password" in r.get_json()["error"]


@pytest.mark.parametrize(
    "email", ["", "plain", "@example.com", "user@", "a@b@c", "x" * 250 + "@e.io", 5, None]
)
def test_malformed_email_is_400(client, email):
    r = sign_up(client, email=email)
    assert r.status_code == 400, r.get_json()
    assert "email" in r.get_json()["error"]


def test_sign_up_disabled_is_403_and_creates_nothing(app_factory):
    app = app_factory(ALLOW_SIGNUP=False)
    client = app.test_client()
    r = sign_up(client)
    assert r.status_code == 403, r.get_json()
    assert r.get_json()["code"] == "signup_disabled"
    r = client.post(SIGN_IN, json={"email": "new.user@example.com", "password": "password123"})
    assert r.status_code == 401


def test_sign_in_with_normalised_email_returns_token_and_cookie(app, client):
    user = make_user(app, email="someone@example.com")
    r = client.post(SIGN_IN, json={"email": " SomeOne@Example.COM", "password": PASSWORD})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["user"]["id"] == str(user.id)
    session_cookie(r)


def test_wrong_password_and_unknown_email_get_the_same_401(app, client):
    make_user(app, email="known@example.com")
    wrong = client.post(SIGN_IN, json={"email": "known@example.com", "password": "nope-nope"})
    unknown = client.post(SIGN_IN, json={"email": "ghost@example.com", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()
    assert "Set-Cookie" not in wrong.headers


def test_more_than_10_failures_are_rate_limited_with_retry_after(app, client):
    user = make_user(app, email="target@example.com")
    for _ in range(10):
        r = client.post(SIGN_IN, json={"email": user.email, "password": "wrong-password"})
        assert r.status_code == 401
    r = client.post(SIGN_IN, json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 429, r.get_json()
    assert 0 < int(r.headers["Retry-After"]) <= 15 * 60
    assert r.get_json()["code"] == "rate_limited"
    # another client address is not blocked
    other = client.post(
        SIGN_IN,
        json={"email": user.email, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.9.8.7"},
    )
    assert other.status_code == 200


def test_failures_older_than_15_minutes_do_not_count(app, client):
    user = make_user(app, email="old@example.com")
    from designrun.extensions import db
    from designrun.models import SignInFailure
    from designrun.models.types import utcnow

    with app.app_context():
        old = utcnow() - timedelta(minutes=16)
        db.session.add_all(
            SignInFailure(email=user.email, client_ip="127.0.0.1", created_at=old)
            for _ in range(12)
        )
        db.session.commit()
    r = client.post(SIGN_IN, json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200, r.get_json()


def test_sign_out_revokes_the_server_side_session(app, client):
    user = make_user(app)
    token = sign_in(client, user)
    old_cookie = client.get_cookie("better-auth.session_token").value
    r = client.post("/api/auth/sign-out")
    assert r.status_code == 200 and r.get_json() == {"success": True}
    assert client.get("/api/auth/get-session").get_json() is None
    # replaying the old cookie or token no longer works
    client.set_cookie("better-auth.session_token", old_cookie)
    assert client.get("/api/design/runs").status_code == 401
    assert app.test_client().get("/api/design/runs", headers=bearer(token)).status_code == 401


def test_get_session_without_session_is_200_null(client):
    r = client.get("/api/auth/get-session")
    assert r.status_code == 200
    assert r.get_json() is None


def test_get_session_shape(app, client):
    user = make_user(app)
    sign_in(client, user)
    body = client.get("/api/auth/get-session").get_json()
    assert set(body) == {"session", "user"}
    assert body["session"]["userId"] == str(user.id)
    assert body["session"]["expiresAt"].endswith("Z")
    assert body["user"]["email"] == user.email


def test_bearer_session_token_works_on_design_api(app):
    user = make_user(app)
    token = sign_in(app.test_client(), user)
    fresh = app.test_client()  # no cookie
    assert fresh.get("/api/design/runs").status_code == 401
    r = fresh.get("/api/design/runs", headers=bearer(token))
    assert r.status_code == 200, r.get_json()


def test_expired_session_is_rejected(app, client):
    user = make_user(app)
    token = sign_in(client, user)
    from sqlalchemy import update

    from designrun.extensions import db
    from designrun.models import UserSession
    from designrun.models.types import utcnow

    with app.app_context():
        db.session.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert client.get("/api/design/runs").status_code == 401
    assert client.get("/api/auth/get-session").get_json() is None
    assert app.test_client().get("/api/design/runs", headers=bearer(token)).status_code == 401


def test_session_is_renewed_on_use(app, client):
    user = make_user(app)
    sign_in(client, user)
    from sqlalchemy import select, update

    from designrun.extensions import db
    from designrun.models import UserSession
    from designrun.models.types import utcnow

    with app.app_context():
        stale = utcnow() - timedelta(days=2)
        db.session.execute(
            update(UserSession).values(updated_at=stale, expires_at=stale + timedelta(days=7))
        )
        db.session.commit()
    assert client.get("/api/design/runs").status_code == 200
    with app.app_context():
        expires = db.session.scalar(select(UserSession.expires_at))
        assert expires > utcnow() + timedelta(days=6)


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        (None, 201),
        ("http://localhost", 201),  # the origin the request arrived on
        ("https://app.example.com", 201),  # TRUSTED_ORIGINS
        ("https://worker.example.com/", 201),  # EXPO_PUBLIC_WORKER_ORIGIN
        ("https://evil.example.com", 403),
        ("null", 403),
        ("http://localhost:8080", 403),
    ],
)
def test_cookie_write_origin_check(app_factory, origin, expected):
    app = app_factory(
        TRUSTED_ORIGINS=["https://app.example.com"],
        EXPO_PUBLIC_WORKER_ORIGIN="https://worker.example.com",
    )
    client = app.test_client()
    sign_in(client, make_user(app))
    headers = {"Origin": origin} if origin else {}
    r = client.post("/api/design/runs", json={"prompt": "p"}, headers=headers)
    assert r.status_code == expected, r.get_json()
    if expected == 403:
        assert r.get_json()["ok"] is False


def test_foreign_origin_cookie_reads_are_allowed_and_bearer_writes_are_not_checked(app):
    client = app.test_client()
    token = sign_in(client, make_user(app))
    evil = {"Origin": "https://evil.example.com"}
    assert client.get("/api/design/runs", headers=evil).status_code == 200
    other = app.test_client()
    r = other.post("/api/design/runs", json={"prompt": "p"}, headers={**evil, **bearer(token)})
    assert r.status_code == 201, r.get_json()


def test_cookie_sign_out_from_foreign_origin_is_403_and_keeps_the_session(app, client):
    sign_in(client, make_user(app))
    r = client.post("/api/auth/sign-out", headers={"Origin": "https://evil.example.com"})
    assert r.status_code == 403
    assert client.get("/api/auth/get-session").get_json() is not None


def test_cli_creates_a_user_who_can_sign_in(app):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["users", "create", "CLI@Example.com", "--name", "Cli", "--password", "password123"]
    )
    assert result.exit_code == 0, result.output
    assert "cli@example.com" in result.output
    r = app.test_client().post(
        SIGN_IN, json={"email": "cli@example.com", "password": "password123"}
    )
    assert r.status_code == 200


def test_cli_refuses_duplicate_and_short_password(app):
    runner = app.test_cli_runner()
    make_user(app, email="taken@example.com")
    result = runner.invoke(
        args=["users", "create", "taken@example.com", "--password", "password123"]
    )
    assert result.exit_code != 0 and "already exists" in result.output
    result = runner.invoke(args=["users", "create", "new@example.com", "--password", "short"])
    assert result.exit_code != 0 and "at least 8" in result.output


def test_sign_up_without_name_and_a_long_local_part_gets_a_shortened_name(client):
    """Issue 6 item 10: the derived name exceeded the 200-character column (500 on PostgreSQL)."""
    local = "a" * 240
    r = client.post(SIGN_UP, json={"email": f"{local}@example.com", "password": "password123"})
    assert r.status_code == 200, r.get_data(as_text=True)
    user = r.get_json()["user"]
    assert user["email"] == f"{local}@example.com"
    assert user["name"] == "a" * 200
