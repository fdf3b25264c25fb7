"""A malformed id in a known route says which id is malformed, still 404 (issue 6 item 19)."""

from __future__ import annotations

import uuid

import pytest

from tests.api.test_audit import assert_error_envelope
from tests.factories import bearer, legacy_headers, make_run, make_user, sign_in

ARTIFACT = "artifact_not_found"


@pytest.mark.parametrize(
    ("method", "path", "name", "code"),
    [
        ("GET", "/api/design/runs/nope", "runId", "run_not_found"),
        ("DELETE", "/api/design/runs/nope", "runId", "run_not_found"),
        ("GET", "/api/design/runs/nope/events", "runId", "run_not_found"),
        ("GET", "/api/design/runs/{run}/artifacts/nope/content", "artifactId", ARTIFACT),
        ("POST", "/api/runner/runs/nope/status", "runId", "run_not_found"),
    ],
)
def test_malformed_id_in_a_known_route_is_404_naming_it(app, client, method, path, name, code):
    user = make_user(app)
    run = make_run(app, user)
    headers = {**bearer(sign_in(client, user)), **legacy_headers(app)}
    if path.startswith("/api/runner"):
        headers = legacy_headers(app)
    r = client.open(path.format(run=run.id), method=method, headers=headers, json={})
    body = assert_error_envelope(r, 404, code)
    assert name in body["error"] and "'nope'" in body["error"], body


def test_unknown_path_is_still_no_such_endpoint(client):
    body = assert_error_envelope(client.get("/api/design/nothing-here"), 404, "not_found")
    assert body["error"] == "no such endpoint"
    body = assert_error_envelope(client.get(f"/api/design/runs/{uuid.uuid4()}/x"), 404)
    assert body["error"] == "no such endpoint"


def test_a_long_malformed_id_is_cut_in_the_message(client):
    r = client.get("/api/design/runs/" + "x" * 5000)
    body = assert_error_envelope(r, 404, "run_not_found")
    assert len(body["error"]) < 200, body
