"""Every operation of /api/openapi.json, fuzzed with schemathesis against the WSGI app.

Each operation gets positive (schema-valid) and, where it has something to break besides the
credentials, negative (schema-violating) data. Callers are signed in: a user by session bearer
token, a runner by a run-scoped token for a real run. Most cases address that real run (and its
artifact, where the path names one), so generation reaches the handlers rather than only
routing 404s; the rest keep the generated ids (with the legacy secret on the runner API, so the
404 comes from the handler itself). No answer may be a 5xx or disagree with the document
(STYLE.md § Tests).
"""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from designrun.api import openapi
from designrun.auth.sessions import hash_token, new_token
from designrun.extensions import db
from designrun.models import UserSession
from designrun.models.types import utcnow
from tests.factories import (
    PASSWORD,
    bearer,
    legacy_headers,
    make_run,
    make_user,
    runner_headers,
)

# NUL characters are refused by design (PostgreSQL cannot store them; the document says so):
# generating them would turn most positive cases into 400s.
CONFIG = schemathesis.Config.from_dict({"generation": {"allow-x00": False}})
SCHEMA = schemathesis.openapi.from_dict(openapi.document(), config=CONFIG)
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]
# Moderate and derandomized: the file stays well under a minute per database, and CI sees
# the same cases on every run. Sign-up and sign-in hash passwords (scrypt, slow on purpose).
MAX_EXAMPLES = 25
MAX_EXAMPLES_HASHING = 10
HASHING = {"POST /api/auth/sign-up/email", "POST /api/auth/sign-in/email"}
# These change the run so that later cases could only get 404/409: each case gets a new run.
FRESH_RUN_PER_CASE = {
    "DELETE /api/design/runs/{runId}",
    "POST /api/runner/runs/{runId}/status",
    "POST /api/design/runs/{runId}/cancel",
}
FRESH_WEBHOOK_PER_CASE = {"DELETE /api/design/webhooks/{webhookId}"}
# Only a finished run can be retried (an active one is 409 run_active). A live stream of a
# running run never ends, and the transport reads answers whole: the stream is fuzzed on a
# finished run (it sends the log, then ``end``, then closes).
FINISHED_RUN = {
    "POST /api/design/runs/{runId}/retry",
    "GET /api/design/runs/{runId}/events/stream",
}
# Any string is a (wrong) token and any body a file: no schema-violating data exists.
NOTHING_TO_BREAK = {"PUT /api/uploads/{token}"}
SESSION_OPERATIONS = {"POST /api/auth/sign-out", "GET /api/auth/get-session"}
# The drawn ``choice`` (0..4) picks this value for about one case in five: keep the generated
# runId (with the legacy secret), e-mail and credentials instead of the real ones.
KEEP_GENERATED = 1


def _parameters() -> list[Any]:
    """(operation, mode) pairs; negative data needs something to break besides credentials."""
    pairs = []
    for label, operation in sorted(OPERATIONS.items()):
        pairs.append(pytest.param(label, GenerationMode.POSITIVE, id=f"{label} positive"))
        breakable = [p for p in operation.iter_parameters() if p.location != "header"]
        if (breakable or len(operation.body)) and label not in NOTHING_TO_BREAK:
            pairs.append(pytest.param(label, GenerationMode.NEGATIVE, id=f"{label} negative"))
    return pairs


def test_every_documented_operation_is_fuzzed():
    documented = {
        f"{method.upper()} {path}"
        for path, operations in openapi.document()["paths"].items()
        for method in operations
    }
    assert set(OPERATIONS) == documented


def _session_token(app: Any, user: Any) -> str:
    """A live session for ``user``, stored directly (signing in would cost a scrypt check)."""
    token = new_token()
    now = utcnow()
    with app.app_context():
        db.session.add(
            UserSession(
                user_id=user.id,
                token_hash=hash_token(token),
                expires_at=now + timedelta(hours=1),
                created_at=now,
                updated_at=now,
            )
        )
        db.session.commit()
    return token


def _closing(app: Any) -> Any:
    """``app`` behind a WSGI server's duty: the answer is read whole, then closed.

    schemathesis' WSGI transport reads a streamed answer (a downloaded artifact) but does not
    close it, which leaks the open file; gunicorn closes it. (Flask's TESTING mode still
    raises an unexpected exception out of the app, so no failure is hidden.)
    """

    def call(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        iterable = app(environ, start_response)
        try:
            return [b"".join(iterable)]
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

    return call


def _upload_artifact(app: Any, run: Any) -> str:
    """A stored artifact of ``run`` (for operations that address one); its id."""
    r = app.test_client().post(
        f"/api/runner/runs/{run.id}/artifacts",
        data={"artifactType": "image", "file": (io.BytesIO(b"\x89PNG fuzz"), "a.png")},
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200, r.get_json()
    return r.get_json()["artifactId"]


def _upload_token(app: Any, run: Any) -> str:
    """The token of a real direct-upload URL of ``run`` (any type, up to MAX_UPLOAD_BYTES)."""
    r = app.test_client().post(
        f"/api/runner/runs/{run.id}/artifacts/uploads",
        json={"fileName": "fuzz.bin"},
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200, r.get_json()
    return r.get_json()["uploadUrl"].rsplit("/", 1)[-1]


def _use_real_account(case: Any, label: str, email: str, choice: int) -> None:
    """Random text is rarely an e-mail address: most auth cases use a real-looking one."""
    if not isinstance(case.body, dict) or choice == KEEP_GENERATED:
        return
    if label == "POST /api/auth/sign-up/email":
        case.body["email"] = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
    elif label == "POST /api/auth/sign-in/email":
        case.body["email"] = email
        if choice % 2 == 0:
            case.body["password"] = PASSWORD
    elif label == "POST /api/design/webhooks":
        case.body["url"] = "http://127.0.0.1:9/hook"


def _make_webhook(app: Any, user: Any) -> str:
    """A webhook endpoint of ``user``'s account (for operations that address one); its id."""
    from designrun.services import webhooks

    with app.test_request_context():
        endpoint, _ = webhooks.create_endpoint(user.account_id, "http://127.0.0.1:9/hook", None)
    return str(endpoint.id)


@pytest.mark.parametrize(("label", "mode"), _parameters())
def test_operation_conforms_to_document_and_never_5xx(app, label, mode):
    operation = OPERATIONS[label]
    api = ([*operation.path.split("/"), "", "", ""])[2]  # runner, design, auth or "" (ops)
    user = make_user(app)
    session_token = _session_token(app, user)
    shared_run = make_run(app, user, status="completed" if label in FINISHED_RUN else "running")
    real_ids = {"runId": str(shared_run.id)}
    if "{artifactId}" in operation.path:
        real_ids["artifactId"] = _upload_artifact(app, shared_run)
    if "{token}" in operation.path:
        real_ids["token"] = _upload_token(app, shared_run)
    # Random text is never an address the webhook rule accepts, and a host name in it would be
    # looked up: the fuzzed app allows private addresses, so nothing is resolved.
    app.config["WEBHOOK_ALLOW_PRIVATE"] = True
    if "{webhookId}" in operation.path:
        real_ids["webhookId"] = _make_webhook(app, user)
    statuses: Counter[int] = Counter()
    wsgi_app = _closing(app)

    @settings(
        max_examples=MAX_EXAMPLES_HASHING if label in HASHING else MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), choice=st.integers(0, 4))
    def fuzz(case: Any, choice: int) -> None:
        real = choice != KEEP_GENERATED
        run = make_run(app, user, status="running") if label in FRESH_RUN_PER_CASE else shared_run
        ids = dict(real_ids)
        if label in FRESH_WEBHOOK_PER_CASE:
            ids["webhookId"] = _make_webhook(app, user)
        if real and case.path_parameters:
            case.path_parameters.update(ids, runId=str(run.id))
        headers: dict[str, str] = {}
        if api == "runner":
            headers = runner_headers(app, run) if real else legacy_headers(app)
        elif api == "design" or (label in SESSION_OPERATIONS and real):
            headers = bearer(session_token)
        if mode is GenerationMode.POSITIVE:
            _use_real_account(case, label, user.email, choice)
        response = case.call(app=wsgi_app, headers=headers)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    fuzz()
    if mode is GenerationMode.POSITIVE:
        assert any(200 <= status < 300 for status in statuses), statuses


# --- attacks the schema cannot express -------------------------------------------------------


def _with_overflowing_number(body: Any, where: int) -> str:
    """``body`` as JSON text with ``1e400`` (which Python's json reads as inf) planted in it.

    ``where`` picks the object that gets it (the top level, or one nested in the body), so the
    number reaches metadata, config, and the top-level fields alike.
    """
    objects = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            objects.append(value)
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(body)
    if objects:
        objects[where % len(objects)]["zzOverflow"] = float("inf")
        text = json.dumps(body)
    else:
        text = json.dumps({"zzOverflow": float("inf"), "value": body})
    return text.replace("Infinity", "1e400")


JSON_BODY_OPERATIONS = sorted(
    label
    for label, operation in OPERATIONS.items()
    if any(body.media_type == "application/json" for body in operation.body)
)


@pytest.mark.parametrize("label", JSON_BODY_OPERATIONS)
def test_overflowing_numbers_are_refused_by_every_json_operation(app, label):
    """``1e400`` anywhere in a schema-valid body is never stored: 400 (or an earlier 4xx)."""
    operation = OPERATIONS[label]
    api = operation.path.split("/")[2]
    user = make_user(app)
    session_token = _session_token(app, user)
    client = app.test_client()

    @settings(
        max_examples=MAX_EXAMPLES_HASHING,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE), where=st.integers(0, 9)
    )
    def attack(case: Any, where: int) -> None:
        if case.media_type != "application/json":
            return
        run = make_run(app, user, status="running")
        if case.path_parameters:
            case.path_parameters["runId"] = str(run.id)
        headers = runner_headers(app, run) if api == "runner" else bearer(session_token)
        text = _with_overflowing_number(case.body, where)
        response = client.open(
            case.formatted_path,
            method=case.method,
            data=text,
            content_type="application/json",
            headers=headers,
            query_string=case.query or {},
        )
        assert 400 <= response.status_code < 500, (text[:300], response.get_data(as_text=True))
        if response.status_code == 400:
            assert "finite" in response.get_json()["error"], response.get_json()

    attack()


def _header_bound_operations() -> list[str]:
    """JSON operations with a field that later becomes an HTTP header (``contentType``)."""
    document = openapi.document()
    schemas = document["components"]["schemas"]
    labels = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = (operation.get("requestBody") or {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            if schema is None:
                continue
            schema = schemas[schema["$ref"].rsplit("/", 1)[-1]] if "$ref" in schema else schema
            if "contentType" in schema.get("properties", {}):
                labels.append(f"{method.upper()} {path}")
    return sorted(labels)


@pytest.mark.parametrize("label", _header_bound_operations())
@pytest.mark.parametrize("bad", ["text/html\r\nX-Injected: 1", "text/plain\n", "image/png\x7f"])
def test_control_characters_in_header_bound_fields_are_400(app, label, bad):
    """A ``contentType`` is sent back as a ``Content-Type`` header: CR/LF or other control
    characters in it are refused when it enters (never a 500 when it is served)."""
    operation = OPERATIONS[label]
    user = make_user(app)
    client = app.test_client()

    @settings(
        max_examples=5,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def attack(case: Any) -> None:
        if case.media_type != "application/json" or not isinstance(case.body, dict):
            return
        run = make_run(app, user, status="running")
        case.path_parameters["runId"] = str(run.id)
        body = {**case.body, "contentType": bad}
        response = client.open(
            case.formatted_path,
            method=case.method,
            json=body,
            headers=runner_headers(app, run),
        )
        assert response.status_code == 400, (body, response.get_data(as_text=True))
        assert "contentType" in response.get_json()["error"], response.get_json()

    attack()
