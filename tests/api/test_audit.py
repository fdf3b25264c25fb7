"""Audits over the whole API (STYLE.md § Tests): routes, guards, the document, error bodies.

- every /api route belongs to a registered blueprint; the guarded ones answer 401 JSON to an
  anonymous caller on every route;
- the OpenAPI document and the url_map list the same operations;
- every error seen across a set of bad requests has the one envelope (API.md § Conventions),
  an unexpected exception included, and never echoes the exception;
- with the database unreachable the app still starts and answers 503 database_unavailable.
"""

from __future__ import annotations

import io
import re
import uuid

import pytest

from designrun.api import BLUEPRINTS, openapi
from tests.factories import bearer, make_run, make_user, runner_headers, sign_in

GUARDED = {"runner_api", "design_api"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
# The document describes the API, not itself.
UNDOCUMENTED = {("GET", "/api/openapi.json")}


def api_rules(app):
    return [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api")]


def methods(rule):
    return sorted(rule.methods - IGNORED_METHODS)


def concrete_path(rule, run_id):
    """The rule's URL with every variable filled in (all of ours are run ids)."""
    return re.sub(r"<(?:[^:<>]+:)?[^<>]+>", str(run_id), rule.rule)


def document_path(rule):
    """``/api/x/<uuid:run_id>`` → ``/api/x/{runId}`` (snake_case view arg → camelCase)."""

    def camel(match):
        head, *rest = match.group(1).split("_")
        return "{" + head + "".join(part.title() for part in rest) + "}"

    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", camel, rule.rule)


def assert_error_envelope(response, status, code=None):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json", response.get_data(as_text=True)
    body = response.get_json()
    assert body["ok"] is False, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["code"], str) and body["code"], body
    if code is not None:
        assert body["code"] == code, body
    return body


# --- routes and guards ---------------------------------------------------------------------


def test_every_api_route_belongs_to_a_registered_blueprint(app):
    names = {blueprint.name for blueprint in BLUEPRINTS}
    assert GUARDED <= names
    strays = [rule.rule for rule in api_rules(app) if rule.endpoint.partition(".")[0] not in names]
    assert strays == []


def test_guarded_blueprints_have_routes_under_their_prefix(app):
    for blueprint in BLUEPRINTS:
        if blueprint.name not in GUARDED:
            continue
        rules = [r for r in api_rules(app) if r.endpoint.startswith(f"{blueprint.name}.")]
        assert rules, blueprint.name
        assert all(r.rule.startswith(blueprint.url_prefix + "/") for r in rules), blueprint.name


def _guarded_calls(app):
    run_id = uuid.uuid4()
    for rule in api_rules(app):
        if rule.endpoint.partition(".")[0] in GUARDED:
            for method in methods(rule):
                yield method, concrete_path(rule, run_id)


def test_every_guarded_route_answers_401_json_without_credentials(app, client):
    calls = list(_guarded_calls(app))
    assert len(calls) >= 10, calls
    for method, path in calls:
        r = client.open(path, method=method, json={"status": "running", "prompt": "x"})
        body = assert_error_envelope(r, 401, "unauthorized")
        assert r.headers.get("WWW-Authenticate") == "Bearer", (method, path, body)


def test_every_guarded_route_answers_401_to_a_wrong_bearer(app, client):
    for method, path in _guarded_calls(app):
        r = client.open(path, method=method, headers=bearer("not-a-token"), json={})
        assert_error_envelope(r, 401, "unauthorized")


def test_runner_token_does_not_open_the_user_api_nor_a_session_the_runner_api(app, client):
    user = make_user(app)
    run = make_run(app, user, status="running")
    token = sign_in(app.test_client(), user)
    r = client.get(f"/api/design/runs/{run.id}", headers=runner_headers(app, run))
    assert_error_envelope(r, 401, "unauthorized")
    r = client.post(
        f"/api/runner/runs/{run.id}/status", json={"progress": 0.5}, headers=bearer(token)
    )
    assert_error_envelope(r, 401, "unauthorized")


# --- the document and the url_map ------------------------------------------------------------


def test_document_and_url_map_list_the_same_operations(app):
    routed = {(method, document_path(rule)) for rule in api_rules(app) for method in methods(rule)}
    documented = {
        (method.upper(), path)
        for path, operations in openapi.document()["paths"].items()
        for method in operations
        if method.upper() not in IGNORED_METHODS  # HEAD is documented where it matters
        and path.startswith("/api")
    }
    assert routed - UNDOCUMENTED == documented


def test_operations_endpoints_are_documented_with_a_summary_and_a_description(app):
    paths = openapi.document()["paths"]
    for path in ("/livez", "/readyz", "/metrics"):
        assert path in {rule.rule for rule in app.url_map.iter_rules()}, path
        operation = paths[path]["get"]
        assert operation["summary"] and operation["description"], path


def test_document_is_served_as_json(client):
    r = client.get("/api/openapi.json")
    assert r.status_code == 200
    assert r.get_json()["openapi"].startswith("3.")
    assert r.get_json()["paths"] == openapi.document()["paths"]


# --- one error envelope for every bad request ----------------------------------------------------


@pytest.fixture
def scene(app):
    """A user with a session and a running run: the credentials the bad requests carry."""
    user = make_user(app)
    run = make_run(app, user, status="running")
    return {
        "run": run,
        "runner": runner_headers(app, run),
        "user": bearer(sign_in(app.test_client(), user)),
    }


BAD_REQUESTS = [
    # (name, method, path, headers key, kwargs, status, code)
    ("unknown path", "GET", "/api/nothing-here", None, {}, 404, "not_found"),
    ("unknown runner path", "POST", "/api/runner/runs/{run}/nope", "runner", {}, 404, None),
    ("non-uuid run id", "GET", "/api/design/runs/not-a-uuid", "user", {}, 404, None),
    ("unknown run", "GET", "/api/design/runs/{missing}", "user", {}, 404, None),
    ("wrong method", "GET", "/api/runner/runs/{run}/status", "runner", {}, 405, None),
    ("wrong method on design", "PUT", "/api/design/runs", "user", {}, 405, None),
    ("wrong method on auth", "GET", "/api/auth/sign-in/email", None, {}, 405, None),
    (
        "text body to status",
        "POST",
        "/api/runner/runs/{run}/status",
        "runner",
        {"data": "status=running", "content_type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    (
        "form body to create run",
        "POST",
        "/api/design/runs",
        "user",
        {"data": {"prompt": "x"}},
        415,
        "unsupported_media_type",
    ),
    (
        "no content type to events",
        "POST",
        "/api/runner/runs/{run}/events",
        "runner",
        {"data": b'{"eventType": "log"}'},
        415,
        "unsupported_media_type",
    ),
    (
        "malformed JSON to events",
        "POST",
        "/api/runner/runs/{run}/events",
        "runner",
        {"data": b'{"eventType": "log",', "content_type": "application/json"},
        400,
        "invalid_request",
    ),
    (
        "malformed JSON to sign-in",
        "POST",
        "/api/auth/sign-in/email",
        None,
        {"data": b"{email", "content_type": "application/json"},
        400,
        "invalid_request",
    ),
    (
        "JSON array to create run",
        "POST",
        "/api/design/runs",
        "user",
        {"json": ["prompt"]},
        400,
        "invalid_request",
    ),
    (
        "invalid UTF-8 to status",
        "POST",
        "/api/runner/runs/{run}/status",
        "runner",
        {"data": b'{"status": "\xff"}', "content_type": "application/json"},
        400,
        "invalid_request",
    ),
    ("no credentials", "GET", "/api/design/runs", None, {}, 401, "unauthorized"),
    ("bad list limit", "GET", "/api/design/runs?limit=0", "user", {}, 400, "invalid_request"),
]


@pytest.mark.parametrize(
    ("method", "path", "who", "kwargs", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_request_gets_the_json_error_envelope(
    client, scene, method, path, who, kwargs, status, code
):
    url = path.format(run=scene["run"].id, missing=uuid.uuid4())
    headers = scene[who] if who else {}
    r = client.open(url, method=method, headers=headers, **kwargs)
    assert_error_envelope(r, status, code)


def test_405_names_the_allowed_methods(client, scene):
    r = client.get(f"/api/runner/runs/{scene['run'].id}/status", headers=scene["runner"])
    assert_error_envelope(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]


def test_foreign_origin_cookie_write_is_403_json(app):
    user = make_user(app)
    browser = app.test_client()
    sign_in(browser, user)
    r = browser.post(
        "/api/design/runs", json={"prompt": "x"}, headers={"Origin": "https://evil.example"}
    )
    assert_error_envelope(r, 403)


def test_auth_errors_also_carry_message(client):
    r = client.post(
        "/api/auth/sign-in/email", json={"email": "nobody@example.com", "password": "x"}
    )
    body = assert_error_envelope(r, 401)
    assert body["message"] == body["error"]


# --- 413 ------------------------------------------------------------------------------------


@pytest.fixture
def small_app(app, app_factory):
    """An app whose MAX_UPLOAD_BYTES is 100 (``app`` first: the teardown empties its tables)."""
    return app_factory(MAX_UPLOAD_BYTES=100)


@pytest.mark.parametrize(
    ("path", "who"),
    [
        ("/api/runner/runs/{run}/events", "runner"),
        ("/api/runner/runs/{run}/status", "runner"),
        ("/api/runner/runs/{run}/artifacts", "runner"),
        ("/api/design/runs", "user"),
        ("/api/design/runs", None),
        ("/api/auth/sign-up/email", None),
        ("/api/nothing-here", None),
    ],
)
def test_body_over_max_upload_bytes_is_413_json(small_app, path, who):
    user = make_user(small_app)
    run = make_run(small_app, user, status="running")
    headers = {
        "runner": runner_headers(small_app, run),
        "user": bearer(sign_in(small_app.test_client(), user)),
        None: {},
    }[who]
    r = small_app.test_client().post(
        path.format(run=run.id), json={"message": "x" * 200, "eventType": "log"}, headers=headers
    )
    assert_error_envelope(r, 413, "payload_too_large")


def test_multipart_upload_over_max_upload_bytes_is_413_json(small_app):
    run = make_run(small_app, make_user(small_app), status="running")
    r = small_app.test_client().post(
        f"/api/runner/runs/{run.id}/artifacts",
        data={"artifactType": "image", "file": (io.BytesIO(b"x" * 500), "a.png")},
        headers=runner_headers(small_app, run),
    )
    assert_error_envelope(r, 413, "payload_too_large")


def test_body_without_content_length_over_the_limit_is_413_json(small_app):
    """A chunked body declares no length: Werkzeug stops reading at the limit.

    (gunicorn de-chunks and sets ``wsgi.input_terminated``; the test client is told so.)
    """
    run = make_run(small_app, make_user(small_app), status="running")
    body = b'{"eventType": "log", "message": "' + b"x" * 500 + b'"}'
    r = small_app.test_client().post(
        f"/api/runner/runs/{run.id}/events",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={**runner_headers(small_app, run), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_error_envelope(r, 413, "payload_too_large")


def test_body_without_content_length_at_the_limit_is_accepted(small_app):
    run = make_run(small_app, make_user(small_app), status="running")
    body = b'{"eventType": "log"}'.ljust(100)
    r = small_app.test_client().post(
        f"/api/runner/runs/{run.id}/events",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={**runner_headers(small_app, run), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert r.status_code == 200, r.get_json()


# --- 500 --------------------------------------------------------------------------------------


SECRET_DETAIL = "kaboom: password=hunter2 at /srv/designrun"


@pytest.fixture
def crashing_app(app_factory):
    app = app_factory(PROPAGATE_EXCEPTIONS=False)

    def boom():
        raise RuntimeError(SECRET_DETAIL)

    app.add_url_rule("/api/audit-boom", "audit_boom", boom, methods=["GET", "POST"])
    return app


def test_unexpected_exception_is_generic_500_json_without_its_text(crashing_app):
    r = crashing_app.test_client().post("/api/audit-boom", json={"a": 1})
    body = assert_error_envelope(r, 500, "internal_error")
    text = r.get_data(as_text=True)
    assert "kaboom" not in text and "hunter2" not in text and "Traceback" not in text, body


def test_exception_in_a_service_is_generic_500_json(crashing_app, monkeypatch):
    from designrun.services import runs

    def broken(*args, **kwargs):
        raise KeyError(SECRET_DETAIL)

    monkeypatch.setattr(runs, "apply_status", broken)
    run = make_run(crashing_app, make_user(crashing_app), status="running")
    r = crashing_app.test_client().post(
        f"/api/runner/runs/{run.id}/status",
        json={"progress": 0.5},
        headers=runner_headers(crashing_app, run),
    )
    assert_error_envelope(r, 500, "internal_error")
    assert "hunter2" not in r.get_data(as_text=True)


# --- database unreachable ---------------------------------------------------------------------


UNREACHABLE = [
    pytest.param("postgresql+psycopg://postgres@127.0.0.1:1/x", id="postgresql-port-1"),
    pytest.param("sqlite:////nonexistent-designrun-dir/sub/designrun.db", id="sqlite-no-dir"),
]


@pytest.fixture(params=UNREACHABLE)
def down_app(request, app, app_factory):
    """An app whose database cannot be reached (``app`` first: the teardown uses its DB)."""
    return app_factory(SQLALCHEMY_DATABASE_URI=request.param)


def test_app_starts_and_serves_its_document_while_the_database_is_down(down_app):
    r = down_app.test_client().get("/api/openapi.json")
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/api/runner/runs/{run}/status", {"json": {"status": "running"}}),
        ("POST", "/api/runner/runs/{run}/events", {"json": {"eventType": "log"}}),
        ("POST", "/api/runner/runs/{run}/events", {"json": {"events": [{"eventType": "a"}]}}),
        (
            "POST",
            "/api/runner/runs/{run}/artifacts",
            {"json": {"artifactType": "image", "storageKey": "elsewhere/a.png"}},
        ),
        ("POST", "/api/runner/runs/{run}/token", {}),
    ],
)
def test_runner_endpoint_is_503_while_the_database_is_down(down_app, method, path, kwargs):
    run_id = uuid.uuid4()
    r = down_app.test_client().open(
        path.format(run=run_id), method=method, headers=runner_headers(down_app, run_id), **kwargs
    )
    assert_error_envelope(r, 503, "database_unavailable")


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/api/design/runs", {"json": {"prompt": "x"}}),
        ("GET", "/api/design/runs", {}),
        ("GET", "/api/design/runs/{run}", {}),
        ("GET", "/api/design/runs/{run}/events", {}),
        ("GET", "/api/design/runs/{run}/artifacts", {}),
        ("DELETE", "/api/design/runs/{run}", {}),
        ("GET", "/api/auth/get-session", {}),
        ("POST", "/api/auth/sign-out", {}),
    ],
)
def test_session_endpoint_is_503_while_the_database_is_down(down_app, method, path, kwargs):
    r = down_app.test_client().open(
        path.format(run=uuid.uuid4()), method=method, headers=bearer("some-session"), **kwargs
    )
    assert_error_envelope(r, 503, "database_unavailable")


@pytest.mark.parametrize(
    "path", ["/api/auth/sign-in/email", "/api/auth/sign-up/email"], ids=["sign-in", "sign-up"]
)
def test_sign_in_and_sign_up_are_503_while_the_database_is_down(down_app, path):
    r = down_app.test_client().post(
        path, json={"email": "someone@example.com", "password": "long enough password"}
    )
    assert_error_envelope(r, 503, "database_unavailable")
