"""Numbers that overflow to infinity are refused wherever JSON enters (issue 6 item 6).

Python's json parses ``1e400`` (or 400 digits) as ``inf``: stored, it made every later list
answer ``Infinity`` (not JSON, browsers refuse it) on SQLite and a 500 on PostgreSQL. API.md:
NaN and infinities are 400, with a message naming the field. Nothing is stored.
"""

from __future__ import annotations

import io
import json

import pytest

from tests.api.test_audit import assert_error_envelope
from tests.factories import bearer, make_run, make_user, runner_headers, sign_in

HUGE = ["1e400", "-1e999", "1" + "0" * 400 + ".0"]


def raw_post(client, path, text, headers):
    return client.post(path, data=text, content_type="application/json", headers=headers)


@pytest.mark.parametrize("number", HUGE)
def test_event_metadata_overflowing_to_infinity_is_400_and_not_stored(app, client, number):
    user = make_user(app)
    run = make_run(app, user, status="running")
    url = f"/api/runner/runs/{run.id}/events"
    single = '{"eventType": "log", "metadata": {"x": N}}'.replace("N", number)
    batch = '{"events": [{"eventType": "log"}, {"eventType": "log", "metadata": {"a": [1, N]}}]}'
    body = assert_error_envelope(raw_post(client, url, single, runner_headers(app, run)), 400)
    assert "metadata.x" in body["error"], body
    body = assert_error_envelope(
        raw_post(client, url, batch.replace("N", number), runner_headers(app, run)), 400
    )
    assert "events[1].metadata.a[1]" in body["error"], body
    listed = client.get(f"/api/design/runs/{run.id}/events", headers=bearer(sign_in(client, user)))
    assert listed.status_code == 200
    assert json.loads(listed.get_data(as_text=True), parse_constant=_refuse)["events"] == []


def _refuse(name):
    raise AssertionError(f"{name} in an answer")


@pytest.mark.parametrize("number", HUGE)
def test_run_config_overflowing_to_infinity_is_400(app, client, number):
    token = sign_in(client, make_user(app))
    text = '{"prompt": "a page", "config": {"a": N}}'.replace("N", number)
    body = assert_error_envelope(raw_post(client, "/api/design/runs", text, bearer(token)), 400)
    assert "config.a" in body["error"], body
    assert client.get("/api/design/runs", headers=bearer(token)).get_json()["runs"] == []


def test_artifact_metadata_overflowing_to_infinity_is_400(app, client):
    run = make_run(app, make_user(app), status="running")
    text = '{"artifactType": "code", "storageKey": "elsewhere/a.txt", "metadata": {"w": 1e400}}'
    url = f"/api/runner/runs/{run.id}/artifacts"
    body = assert_error_envelope(raw_post(client, url, text, runner_headers(app, run)), 400)
    assert "metadata.w" in body["error"], body


@pytest.mark.parametrize("metadata", ['{"w": 1e400}', '{"w": NaN}', '{"w": -Infinity}'])
def test_multipart_metadata_with_a_non_finite_number_is_400_and_stores_nothing(
    app, client, metadata
):
    user = make_user(app)
    run = make_run(app, user, status="running")
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data={
            "artifactType": "image",
            "metadata": metadata,
            "file": (io.BytesIO(b"png"), "a.png"),
        },
        headers=runner_headers(app, run),
    )
    assert_error_envelope(r, 400)
    listed = client.get(
        f"/api/design/runs/{run.id}/artifacts", headers=bearer(sign_in(client, user))
    )
    assert listed.get_json()["artifacts"] == []


@pytest.mark.parametrize("number", HUGE)
def test_status_progress_overflowing_to_infinity_is_400(app, client, number):
    run = make_run(app, make_user(app), status="running")
    url = f"/api/runner/runs/{run.id}/status"
    r = raw_post(client, url, '{"progress": N}'.replace("N", number), runner_headers(app, run))
    body = assert_error_envelope(r, 400)
    assert "progress" in body["error"], body


def test_large_but_finite_numbers_are_kept(app, client):
    run = make_run(app, make_user(app), status="running")
    url = f"/api/runner/runs/{run.id}/events"
    text = '{"eventType": "log", "metadata": {"big": 1e300, "int": N}}'.replace("N", "9" * 30)
    r = raw_post(client, url, text, runner_headers(app, run))
    assert r.status_code == 200, r.get_json()
