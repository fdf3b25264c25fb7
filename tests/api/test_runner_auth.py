"""API.md § Runner API authentication, and POST /api/runner/runs/:runId/token."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest

from tests.factories import legacy_headers, make_run, make_user, runner_headers, runner_token

ENDPOINTS = [
    ("status", {"status": "running"}),
    ("events", {"eventType": "log"}),
    ("artifacts", {"artifactType": "code", "storageKey": "elsewhere/a.txt"}),
    ("token", None),
]


def call(client, run_id, endpoint, body, headers):
    kwargs = {"json": body} if body is not None else {}
    return client.post(f"/api/runner/runs/{run_id}/{endpoint}", headers=headers, **kwargs)


def assert_401(response):
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["code"] == "unauthorized"
    assert response.get_json()["ok"] is False
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def sign(app, claims, secret=None, algorithm="HS256", headers=None):
    return jwt.encode(
        claims, secret or app.config["RUNNER_AUTH_SECRET"], algorithm=algorithm, headers=headers
    )


def claims_for(run, **extra):
    now = int(time.time())
    claims = {"sub": str(run.id), "scope": "runner", "iat": now, "exp": now + 600}
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(("endpoint", "body"), ENDPOINTS)
def test_run_scoped_token_works_on_its_own_run(app, client, endpoint, body):
    run = make_run(app, make_user(app))
    r = call(client, run.id, endpoint, body, runner_headers(app, run))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["runStatus"] in {"queued", "running"}


@pytest.mark.parametrize(("endpoint", "body"), ENDPOINTS)
def test_token_of_another_run_is_401(app, client, endpoint, body):
    user = make_user(app)
    run, other = make_run(app, user), make_run(app, user)
    assert_401(call(client, run.id, endpoint, body, runner_headers(app, other)))


@pytest.mark.parametrize(("endpoint", "body"), ENDPOINTS)
def test_legacy_secret_works_on_every_run(app, client, endpoint, body):
    run = make_run(app, make_user(app))
    r = call(client, run.id, endpoint, body, legacy_headers(app))
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer a.b.c"},
    ],
)
@pytest.mark.parametrize(("endpoint", "body"), ENDPOINTS)
def test_missing_or_malformed_credentials_are_401(app, client, headers, endpoint, body):
    run = make_run(app, make_user(app))
    assert_401(call(client, run.id, endpoint, body, headers))


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda app, run: sign(app, claims_for(run, exp=int(time.time()) - 5)), id="expired"
        ),
        pytest.param(lambda app, run: sign(app, claims_for(run), secret="x" * 40), id="wrong-key"),
        pytest.param(lambda app, run: sign(app, claims_for(run, scope="user")), id="wrong-scope"),
        pytest.param(lambda app, run: sign(app, claims_for(run, scope=None)), id="no-scope"),
        pytest.param(lambda app, run: sign(app, claims_for(run, sub=None)), id="no-sub"),
        pytest.param(lambda app, run: sign(app, claims_for(run, exp=None)), id="no-exp"),
        pytest.param(lambda app, run: sign(app, claims_for(run, sub="not-a-uuid")), id="bad-sub"),
        pytest.param(lambda app, run: sign(app, claims_for(run), algorithm="HS512"), id="hs512"),
        pytest.param(
            lambda app, run: jwt.encode(claims_for(run), None, algorithm="none"), id="alg-none"
        ),
        pytest.param(
            lambda app, run: runner_token(app, run.id)[:-3] + "abc", id="tampered-signature"
        ),
    ],
)
def test_invalid_tokens_are_401(app, client, make_token):
    run = make_run(app, make_user(app))
    token = make_token(app, run)
    assert_401(
        call(client, run.id, "status", {"status": "running"}, {"Authorization": f"Bearer {token}"})
    )


def test_tampered_payload_is_401(app, client):
    user = make_user(app)
    run, other = make_run(app, user), make_run(app, user)
    header, _, signature = runner_token(app, other.id).split(".")
    payload = jwt.utils.base64url_encode(json.dumps(claims_for(run)).encode()).decode()
    forged = f"{header}.{payload}.{signature}"
    assert_401(
        call(client, run.id, "status", {"status": "running"}, {"Authorization": f"Bearer {forged}"})
    )


def test_extra_claims_are_allowed(app, client):
    run = make_run(app, make_user(app))
    token = sign(app, claims_for(run, workspace="ws-1", attempt=2))
    r = call(client, run.id, "status", {"status": "running"}, {"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.get_json()


def test_upper_case_run_id_in_path_is_accepted(app, client):
    run = make_run(app, make_user(app))
    r = call(client, str(run.id).upper(), "status", {"progress": 0.5}, runner_headers(app, run))
    assert r.status_code == 200, r.get_json()


def test_non_uuid_run_id_in_path_is_404_json(app, client):
    r = call(client, "not-a-uuid", "status", {"status": "running"}, legacy_headers(app))
    assert r.status_code == 404
    assert r.get_json()["ok"] is False


def test_refresh_returns_a_new_valid_token_and_the_old_one_keeps_working(app, client):
    run = make_run(app, make_user(app))
    old = runner_headers(app, run)
    r = call(client, run.id, "token", None, old)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["ok"] is True and body["runStatus"] == "queued"
    assert body["expiresAt"].endswith("Z")
    claims = jwt.decode(body["runnerToken"], app.config["RUNNER_AUTH_SECRET"], algorithms=["HS256"])
    assert claims["sub"] == str(run.id) and claims["scope"] == "runner"
    assert abs(claims["exp"] - claims["iat"] - 86400) <= 1
    fresh = {"Authorization": f"Bearer {body['runnerToken']}"}
    assert call(client, run.id, "status", {"progress": 0.1}, fresh).status_code == 200
    assert call(client, run.id, "status", {"progress": 0.2}, old).status_code == 200


def test_token_ttl_follows_runner_token_ttl(app_factory):
    app = app_factory(RUNNER_TOKEN_TTL=120)
    run = make_run(app, make_user(app))
    body = (
        app.test_client()
        .post(f"/api/runner/runs/{run.id}/token", headers=runner_headers(app, run))
        .get_json()
    )
    claims = jwt.decode(body["runnerToken"], app.config["RUNNER_AUTH_SECRET"], algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_refresh_works_on_terminal_runs(app, client, status):
    run = make_run(app, make_user(app), status=status)
    r = call(client, run.id, "token", None, runner_headers(app, run))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["runStatus"] == status


def test_refresh_with_expired_token_is_401(app, client):
    run = make_run(app, make_user(app))
    token = sign(app, claims_for(run, exp=int(time.time()) - 1))
    assert_401(call(client, run.id, "token", None, {"Authorization": f"Bearer {token}"}))


def test_refresh_for_unknown_run_is_404(app, client):
    missing = uuid.uuid4()
    r = call(client, missing, "token", None, runner_headers(app, missing))
    assert r.status_code == 404, r.get_json()


def test_session_token_is_not_a_runner_credential(app, client):
    from tests.factories import sign_in

    user = make_user(app)
    run = make_run(app, user)
    token = sign_in(client, user)
    assert_401(
        call(client, run.id, "status", {"status": "running"}, {"Authorization": f"Bearer {token}"})
    )


# --- time claims are checked on every use; only signatures are cached (issue 6 item 5) -------


def _status(client, run, token):
    headers = {"Authorization": f"Bearer {token}"}
    return call(client, run.id, "status", {"progress": 0.5}, headers)


def test_token_with_iat_slightly_in_the_future_is_accepted(app, client):
    """Hosts' clocks differ by a few seconds: a fresh token must not be refused for it."""
    run = make_run(app, make_user(app))
    token = sign(app, claims_for(run, iat=int(time.time()) + 2))
    r = _status(client, run, token)
    assert r.status_code == 200, r.get_json()


def test_token_not_yet_valid_is_401_and_accepted_once_valid(app, client, monkeypatch):
    from designrun.auth import runner_tokens

    run = make_run(app, make_user(app))
    now = time.time()
    token = sign(app, claims_for(run, iat=int(now) + 120, nbf=int(now) + 120))
    assert_401(_status(client, run, token))
    monkeypatch.setattr(runner_tokens.time, "time", lambda: now + 121)
    r = _status(client, run, token)
    assert r.status_code == 200, r.get_json()


def test_cached_token_is_401_once_it_expires(app, client, monkeypatch):
    from designrun.auth import runner_tokens

    run = make_run(app, make_user(app))
    now = time.time()
    token = sign(app, claims_for(run, exp=int(now) + 60))
    assert _status(client, run, token).status_code == 200
    later = now + 61
    monkeypatch.setattr(runner_tokens.time, "time", lambda: later)
    assert_401(_status(client, run, token))


def test_token_with_an_extra_aud_claim_is_accepted(app, client):
    """API.md: extra claims are allowed, ``aud`` included (PyJWT refuses it by default)."""
    run = make_run(app, make_user(app))
    token = sign(app, claims_for(run, aud="designrun-runner", iss="daytona"))
    r = _status(client, run, token)
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_non_numeric_time_claims_are_401(app, client, claim):
    run = make_run(app, make_user(app))
    assert_401(_status(client, run, sign(app, claims_for(run, **{claim: "soon"}))))
    assert_401(_status(client, run, sign(app, claims_for(run, **{claim: True}))))
