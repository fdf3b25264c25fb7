"""The sign-in rate limit under concurrency; the client address behind proxies (issue 6, 14).

- 30 wrong passwords sent at the same moment: at most 10 are checked (401), the rest 429.
  (Counting first and recording the failure afterwards let every concurrent attempt through.)
- ``TRUSTED_PROXIES=N`` applies Werkzeug's ProxyFix: the client address is taken from the N-th
  last ``X-Forwarded-For`` entry; without it the header is ignored (a client cannot pick its
  own address to dodge the limit).
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from designrun.config import ConfigError
from tests.factories import PASSWORD, make_user

SIGN_IN = "/api/auth/sign-in/email"
ATTEMPTS = 30


def test_concurrent_wrong_passwords_get_at_most_10_tries(app):
    user = make_user(app, email="concurrent@example.com")
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    barrier = threading.Barrier(ATTEMPTS)

    def attempt() -> None:
        try:
            client = app.test_client()
            barrier.wait(timeout=60)
            r = client.post(SIGN_IN, json={"email": user.email, "password": "wrong-password"})
            statuses[r.status_code] += 1
        except Exception as exc:  # a dead thread must fail the test, not shrink it
            errors.append(repr(exc))

    threads = [threading.Thread(target=attempt) for _ in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(statuses.values()) == ATTEMPTS
    assert set(statuses) <= {401, 429}, statuses
    assert statuses[401] <= 10, statuses
    # Refused attempts withdraw their row: only the checked ones count as failures (under
    # contention some attempts may be refused early, which errs on the safe side).
    from sqlalchemy import func, select

    from designrun.extensions import db
    from designrun.models import SignInFailure

    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SignInFailure)) == statuses[401]
    r = app.test_client().post(SIGN_IN, json={"email": user.email, "password": PASSWORD})
    assert r.status_code == (429 if statuses[401] == 10 else 200), r.get_json()


def test_refused_attempt_with_the_right_password_leaves_the_count_alone(app, client):
    user = make_user(app, email="locked@example.com")
    for _ in range(10):
        client.post(SIGN_IN, json={"email": user.email, "password": "wrong-password"})
    for _ in range(3):
        r = client.post(SIGN_IN, json={"email": user.email, "password": PASSWORD})
        assert r.status_code == 429
        assert 0 < int(r.headers["Retry-After"]) <= 15 * 60


def _fail_ten_times(client, email, **kwargs):
    for _ in range(10):
        r = client.post(SIGN_IN, json={"email": email, "password": "wrong-password"}, **kwargs)
        assert r.status_code == 401, r.get_json()


def test_without_trusted_proxies_x_forwarded_for_is_ignored(app, client):
    user = make_user(app, email="spoof@example.com")
    for number in range(10):
        r = client.post(
            SIGN_IN,
            json={"email": user.email, "password": "wrong-password"},
            headers={"X-Forwarded-For": f"203.0.113.{number}"},
        )
        assert r.status_code == 401
    r = client.post(
        SIGN_IN,
        json={"email": user.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.1"},
    )
    assert r.status_code == 429, r.get_json()


def test_behind_one_trusted_proxy_each_client_has_its_own_limit(app_factory, monkeypatch):
    monkeypatch.setenv("TRUSTED_PROXIES", "1")
    app = app_factory()
    assert app.config["TRUSTED_PROXIES"] == 1
    user = make_user(app, email="proxied@example.com")
    client = app.test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    _fail_ten_times(
        client, user.email, headers={"X-Forwarded-For": "203.0.113.7"}, environ_base=proxy
    )
    # The same client through the proxy is limited, even when it prepends a forged entry.
    r = client.post(
        SIGN_IN,
        json={"email": user.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.7"},
        environ_base=proxy,
    )
    assert r.status_code == 429, r.get_json()
    # Another client through the same proxy is not.
    r = client.post(
        SIGN_IN,
        json={"email": user.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.9"},
        environ_base=proxy,
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["user"]["email"] == user.email


def test_trusted_proxies_forwarded_proto_makes_the_cookie_secure(app_factory, monkeypatch):
    monkeypatch.setenv("TRUSTED_PROXIES", "1")
    app = app_factory()
    user = make_user(app)
    r = app.test_client().post(
        SIGN_IN,
        json={"email": user.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
    )
    assert r.status_code == 200
    assert "Secure" in r.headers["Set-Cookie"]


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_trusted_proxies_must_be_a_whole_number(app_factory, monkeypatch, value):
    monkeypatch.setenv("TRUSTED_PROXIES", value)
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        app_factory()
