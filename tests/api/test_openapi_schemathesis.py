"""Every operation of /api/openapi.json, fuzzed with schemathesis against the WSGI app.

Each operation gets positive (schema-valid) and, where it has something to break besides the
credentials, negative (schema-violating) data. Callers are signed in: a user by session bearer
token, a runner by a run-scoped token for a real run. Most cases address that real run, so
generation reaches the handlers rather than only routing 404s; the rest keep the generated
runId (with the legacy secret on the runner API, so the 404 comes from the handler itself).
No answer may be a 5xx or disagree with the document (STYLE.md § Tests).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from designrun.api import openapi
from tests.factories import (
    PASSWORD,
    bearer,
    legacy_headers,
    make_run,
    make_user,
    runner_headers,
    sign_in,
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
# the same cases on every run.
FUZZ = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
# These change the run so that later cases could only get 404/409: each case gets a new run.
FRESH_RUN_PER_CASE = {"DELETE /api/design/runs/{runId}", "POST /api/runner/runs/{runId}/status"}
SESSION_OPERATIONS = {"POST /api/auth/sign-out", "GET /api/auth/get-session"}


def _parameters() -> list[Any]:
    """(operation, mode) pairs; negative data needs something to break besides credentials."""
    pairs = []
    for label, operation in sorted(OPERATIONS.items()):
        pairs.append(pytest.param(label, GenerationMode.POSITIVE, id=f"{label} positive"))
        breakable = [p for p in operation.iter_parameters() if p.location != "header"]
        if breakable or len(operation.body):
            pairs.append(pytest.param(label, GenerationMode.NEGATIVE, id=f"{label} negative"))
    return pairs


def test_document_lists_every_operation():
    assert len(OPERATIONS) == 14, sorted(OPERATIONS)


def _use_real_account(case: Any, label: str, email: str, choice: int) -> None:
    """Random text is rarely an e-mail address: most auth cases use a real-looking one."""
    if not isinstance(case.body, dict) or choice == 0:
        return
    if label == "POST /api/auth/sign-up/email":
        case.body["email"] = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
    elif label == "POST /api/auth/sign-in/email":
        case.body["email"] = email
        if choice % 2:
            case.body["password"] = PASSWORD


@pytest.mark.parametrize(("label", "mode"), _parameters())
def test_operation_conforms_to_document_and_never_5xx(app, label, mode):
    operation = OPERATIONS[label]
    user = make_user(app)
    session_token = sign_in(app.test_client(), user)
    shared_run = make_run(app, user, status="running")
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode), choice=st.integers(0, 4))
    def fuzz(case: Any, choice: int) -> None:
        # choice 0 (about one case in five) keeps the generated runId / credentials / e-mail.
        headers: dict[str, str] = {}
        if "runId" in (case.path_parameters or {}):
            fresh = label in FRESH_RUN_PER_CASE
            run = make_run(app, user, status="running") if fresh else shared_run
            if choice:
                case.path_parameters["runId"] = str(run.id)
                headers = runner_headers(app, run)
            else:
                headers = legacy_headers(app)
        if label.split(" ")[1].startswith("/api/design/") or (
            label in SESSION_OPERATIONS and choice
        ):
            headers = bearer(session_token)
        if mode is GenerationMode.POSITIVE:
            _use_real_account(case, label, user.email, choice)
        response = case.call(app=app, headers=headers)
        statuses[response.status_code] += 1
        print("STAT", label, mode, response.status_code, response.text[:200].replace("\n", " "))
        case.validate_response(response, checks=CHECKS, headers=headers)

    fuzz()
    if mode is GenerationMode.POSITIVE:
        assert any(200 <= status < 300 for status in statuses), statuses
