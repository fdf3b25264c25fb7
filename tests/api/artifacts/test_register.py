"""API.md § POST /api/runner/runs/:runId/artifacts: JSON registration."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from tests.api.artifacts.support import (
    BAD_KEYS,
    MAX_SAFE_INTEGER,
    artifact_rows,
    assert_invalid,
    is_uuid,
    register,
    upload,
)
from tests.factories import legacy_headers, make_run, make_user, runner_headers

# --- JSON registration -------------------------------------------------------------------------


def test_json_registration_stores_defaults_and_answers_its_shape(app, client, objects):
    run = make_run(app, make_user(app), status="running")
    key = f"runs/{run.id}/screens/home.png"
    r = register(client, app, run, {"artifactType": "screenshot", "storageKey": key})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert set(body) == {"ok", "runStatus", "artifactId", "storageKey", "sizeBytes"}
    assert body["ok"] is True and body["runStatus"] == "running"
    assert is_uuid(body["artifactId"])
    assert body["storageKey"] == key
    assert body["sizeBytes"] is None
    assert artifact_rows(app, run.id) == [("screenshot", key, None, None, {})]
    assert objects.keys() == set()  # registration never touches the store


def test_json_registration_keeps_every_field(app, client):
    run = make_run(app, make_user(app), status="running")
    body = {
        "artifactType": "bundle",
        "storageKey": "elsewhere/site.zip",
        "contentType": "application/zip",
        "sizeBytes": 12345,
        "metadata": {"pages": 3, "nested": {"ok": [1, 2]}},
    }
    r = register(client, app, run, body)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["sizeBytes"] == 12345
    assert artifact_rows(app, run.id) == [
        ("bundle", body["storageKey"], "application/zip", 12345, body["metadata"])
    ]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("exports/site.zip", id="outside-runs"),
        pytest.param("a/..b/c", id="dotdot-inside-a-name"),
        pytest.param("RUNS/{id}/x", id="upper-case-runs-of-the-own-run"),
        pytest.param("{upper}/x.png", id="own-id-upper-case"),
        pytest.param("/".join(["k" * 254] * 4) + "/kkkk", id="1024-bytes"),
    ],
)
def test_acceptable_keys_are_registered_as_given(app, client, key):
    run = make_run(app, make_user(app), status="running")
    key = key.replace("{upper}", f"runs/{str(run.id).upper()}").replace("{id}", str(run.id))
    r = register(client, app, run, {"artifactType": "file", "storageKey": key})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["storageKey"] == key


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unacceptable_key_is_400_naming_storage_key(app, client, key):
    run = make_run(app, make_user(app), status="running")
    key = key.replace("{other}", str(uuid.uuid4()))
    r = register(client, app, run, {"artifactType": "file", "storageKey": key})
    assert_invalid(r, "storageKey")
    assert artifact_rows(app, run.id) == []


def test_another_existing_runs_prefix_is_400(app, client):
    user = make_user(app)
    run = make_run(app, user, status="running")
    other = make_run(app, user, status="running")
    r = register(client, app, run, {"artifactType": "file", "storageKey": f"runs/{other.id}/x.png"})
    assert_invalid(r, "storageKey")
    r = register(
        client,
        app,
        run,
        {"artifactType": "file", "storageKey": f"runs/{other.id}/x.png"},
        headers=legacy_headers(app),  # the legacy secret is valid for every run, not every key
    )
    assert_invalid(r, "storageKey")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"storageKey": None}, "storageKey"),
        ({"storageKey": 5}, "storageKey"),
        ({"artifactType": None}, "artifactType"),
        ({"artifactType": ""}, "artifactType"),
        ({"artifactType": "t" * 101}, "artifactType"),
        ({"artifactType": 3}, "artifactType"),
        ({"contentType": "c" * 256}, "contentType"),
        ({"contentType": 1}, "contentType"),
        ({"sizeBytes": True}, "sizeBytes"),
        ({"sizeBytes": False}, "sizeBytes"),
        ({"sizeBytes": 1e300}, "sizeBytes"),
        ({"sizeBytes": 1.5}, "sizeBytes"),
        ({"sizeBytes": -1}, "sizeBytes"),
        ({"sizeBytes": MAX_SAFE_INTEGER + 1}, "sizeBytes"),
        ({"sizeBytes": "10"}, "sizeBytes"),
        ({"metadata": []}, "metadata"),
        ({"metadata": "{}"}, "metadata"),
        ({"metadata": {"k": "x" * 65_536}}, "metadata"),
    ],
)
def test_invalid_registration_field_is_400_naming_it(app, client, change, field):
    run = make_run(app, make_user(app), status="running")
    body = {"artifactType": "file", "storageKey": f"runs/{run.id}/x"}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    r = register(client, app, run, body)
    assert_invalid(r, field)
    assert artifact_rows(app, run.id) == []


def test_limits_themselves_are_accepted(app, client):
    run = make_run(app, make_user(app), status="running")
    padding = 64 * 1024 - len('{"k":""}')
    metadata = {"k": "x" * padding}
    assert len(json.dumps(metadata, separators=(",", ":"))) == 64 * 1024
    body = {
        "artifactType": "t" * 100,
        "storageKey": "elsewhere/x",  # a reference: its claimed size is kept as given
        "contentType": "c" * 255,
        "sizeBytes": MAX_SAFE_INTEGER,
        "metadata": metadata,
    }
    r = register(client, app, run, body)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["sizeBytes"] == MAX_SAFE_INTEGER
    r = register(client, app, run, {**body, "sizeBytes": 0})
    assert r.get_json()["sizeBytes"] == 0
    assert [row[3] for row in artifact_rows(app, run.id)] == [MAX_SAFE_INTEGER, 0]


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"x"', b'{"sizeBytes": NaN}'])
def test_malformed_json_is_400(app, client, raw):
    run = make_run(app, make_user(app), status="running")
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data=raw,
        content_type="application/json",
        headers=runner_headers(app, run),
    )
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["ok"] is False


def test_unknown_run_is_404(app, client):
    missing = uuid.uuid4()
    r = client.post(
        f"/api/runner/runs/{missing}/artifacts",
        json={"artifactType": "file", "storageKey": f"runs/{missing}/x"},
        headers=runner_headers(app, missing),
    )
    assert r.status_code == 404, r.get_json()
    assert r.get_json()["ok"] is False


def test_token_of_another_run_is_401(app, client, objects):
    user = make_user(app)
    run = make_run(app, user, status="running")
    other = make_run(app, user, status="running")
    for send in (register, upload):
        body = (
            {"artifactType": "file", "storageKey": f"runs/{run.id}/x"}
            if send is register
            else {"artifactType": "file", "file": (io.BytesIO(b"data"), "x.bin")}
        )
        r = send(client, app, run, body, headers=runner_headers(app, other))
        assert r.status_code == 401, r.get_json()
        assert r.get_json()["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = client.post(f"/api/runner/runs/{run.id}/artifacts", json={"artifactType": "file"})
    assert r.status_code == 401, r.get_json()
    assert artifact_rows(app, run.id) == []
    assert objects.keys() == set()


def test_legacy_secret_may_register(app, client):
    run = make_run(app, make_user(app), status="running")
    r = register(
        client,
        app,
        run,
        {"artifactType": "file", "storageKey": f"runs/{run.id}/x"},
        headers=legacy_headers(app),
    )
    assert r.status_code == 200, r.get_json()


def test_retry_with_the_same_idempotency_key_answers_the_original_artifact(app, client):
    user = make_user(app)
    run = make_run(app, user, status="running")
    body = {"artifactType": "image", "storageKey": "elsewhere/a.png", "idempotencyKey": "art-1"}
    first = register(client, app, run, body)
    assert first.status_code == 200, first.get_json()
    again = register(client, app, run, {**body, "storageKey": "elsewhere/b.png"})
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["artifactId"] == first.get_json()["artifactId"]
    assert again.get_json()["storageKey"] == "elsewhere/a.png"
    assert len(artifact_rows(app, run.id)) == 1
    # keys are per run
    other = make_run(app, user, status="running")
    elsewhere = register(client, app, other, body)
    assert elsewhere.get_json()["artifactId"] != first.get_json()["artifactId"]


@pytest.mark.parametrize("key", ["", "k" * 201, 7])
def test_bad_idempotency_key_is_400(app, client, key):
    run = make_run(app, make_user(app), status="running")
    body = {"artifactType": "image", "storageKey": "elsewhere/a.png", "idempotencyKey": key}
    assert_invalid(register(client, app, run, body), "idempotencyKey")
