"""API.md § Artifacts at any size: direct upload URLs, then registration (local and S3).

S3 URLs are presigned PUTs to the moto server, sent as plain HTTP PUTs with requests; the
local backend's URL is the service's own ``PUT /api/uploads/<token>``.
"""

from __future__ import annotations

import io
import time

import itsdangerous
import pytest
import requests

from tests.api.artifacts.support import artifact_rows, register
from tests.factories import make_run, make_user, runner_headers, sign_in


def ticket(client, app, run, **body):
    body.setdefault("fileName", "video.mp4")
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts/uploads", json=body, headers=runner_headers(app, run)
    )
    return r


def put(client, backend, answer, data, headers=None):
    """PUT ``data`` to the upload URL as a runner would: plain HTTP (S3) or the service."""
    sent = {**answer["headers"], **(headers or {})}
    if backend == "s3":
        return requests.put(answer["uploadUrl"], data=data, headers=sent, timeout=30)
    path = answer["uploadUrl"].split("localhost", 1)[1]
    return client.put(path, data=data, headers=sent)


def status_of(response):
    return response.status_code


def test_direct_upload_then_registration_takes_the_size_from_the_store(
    backend, app, client, objects
):
    run = make_run(app, make_user(app), status="running")
    body = b"\x00\x01video" * 5000
    r = ticket(client, app, run, contentType="video/mp4", sizeBytes=len(body))
    assert r.status_code == 200, r.get_json()
    answer = r.get_json()
    assert set(answer) >= {"ok", "runStatus", "uploadUrl", "method", "headers", "storageKey"}
    assert answer["method"] == "PUT" and answer["runStatus"] == "running"
    assert answer["storageKey"].startswith(f"runs/{run.id}/")
    assert answer["storageKey"].endswith("/video.mp4")
    assert answer["expiresAt"].endswith("Z")
    assert answer["headers"]["Content-Type"] == "video/mp4"
    if backend == "s3":
        assert answer["uploadUrl"].startswith(objects.endpoint)
    else:
        assert "/api/uploads/" in answer["uploadUrl"]
    assert objects.keys() == set()

    sent = put(client, backend, answer, body)
    assert status_of(sent) == 200, sent.content if backend == "s3" else sent.get_json()
    assert objects.get(answer["storageKey"]) == body

    key = answer["storageKey"]
    r = register(
        client, app, run, {"artifactType": "video", "storageKey": key, "contentType": "video/mp4"}
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["sizeBytes"] == len(body)
    r = register(client, app, run, {"artifactType": "video", "storageKey": key, "sizeBytes": 3})
    assert r.status_code == 400 and r.get_json()["code"] == "size_mismatch", r.get_json()
    assert [row[3] for row in artifact_rows(app, run.id)] == [len(body)]


def test_local_upload_url_streams_to_disk_with_nothing_left_over(app, client, objects, backend):
    if backend != "local":
        pytest.skip("the service's own upload URL")
    run = make_run(app, make_user(app), status="running")
    answer = ticket(client, app, run).get_json()
    assert answer["headers"] == {}
    r = put(client, backend, answer, b"x" * 3_000_000, {"Content-Type": "application/zip"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"ok": True, "storageKey": answer["storageKey"], "sizeBytes": 3_000_000}
    assert objects.keys() == {answer["storageKey"]}  # no temporary file left in .partial/


@pytest.mark.parametrize("how", ["tampered", "other-key", "foreign-secret", "garbage"])
def test_tampered_or_foreign_upload_url_is_403_and_nothing_stored(app, client, objects, how):
    if app.config["STORAGE_BACKEND"] != "local":
        pytest.skip("S3 checks its own signatures")
    run = make_run(app, make_user(app), status="running")
    answer = ticket(client, app, run).get_json()
    path = answer["uploadUrl"].split("localhost", 1)[1]
    token = path.rsplit("/", 1)[1]
    serializer = itsdangerous.URLSafeTimedSerializer(
        app.config["SECRET_KEY"] if how != "foreign-secret" else "x" * 40,
        salt="designrun.upload-url.v1",
    )
    if how == "tampered":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    elif how in {"other-key", "foreign-secret"}:
        payload = serializer.loads(token) if how == "other-key" else {}
        payload = {"r": str(run.id), "k": "exports/evil.txt", "n": 10, "s": None, "t": None}
        token = itsdangerous.URLSafeTimedSerializer("y" * 40, salt="designrun.upload-url.v1").dumps(
            payload
        )
    else:
        token = "not-a-token"
    r = client.put(f"/api/uploads/{token}", data=b"evil")
    assert r.status_code == 403, r.get_json()
    assert r.get_json()["ok"] is False and r.get_json()["code"] == "upload_url_invalid"
    assert objects.keys() == set()


def test_expired_upload_url_is_403(app, client, objects, monkeypatch):
    if app.config["STORAGE_BACKEND"] != "local":
        pytest.skip("S3 checks its own expiry")
    run = make_run(app, make_user(app), status="running")
    past = time.time() - app.config["UPLOAD_URL_TTL"] - 10
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: int(past))
    answer = ticket(client, app, run).get_json()
    monkeypatch.undo()
    r = client.put(answer["uploadUrl"].split("localhost", 1)[1], data=b"late")
    assert r.status_code == 403 and "expired" in r.get_json()["error"], r.get_json()
    assert objects.keys() == set()


def test_body_over_the_bound_size_is_413_and_nothing_stored(app, client, objects):
    if app.config["STORAGE_BACKEND"] != "local":
        pytest.skip("S3 refuses a body that is not the signed Content-Length itself")
    run = make_run(app, make_user(app), status="running")
    answer = ticket(client, app, run, sizeBytes=10).get_json()
    path = answer["uploadUrl"].split("localhost", 1)[1]
    r = client.put(path, data=b"x" * 11)
    assert r.status_code == 413, r.get_json()
    # Without Content-Length (a chunked body) the limit is enforced while reading.
    r = client.put(
        path,
        input_stream=io.BytesIO(b"y" * 5000),
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets it
    )
    assert r.status_code == 413, r.get_json()
    r = client.put(path, data=b"z" * 9)
    assert r.status_code == 400 and r.get_json()["code"] == "size_mismatch", r.get_json()
    assert objects.keys() == set()
    r = client.put(path, data=b"0123456789")
    assert r.status_code == 200, r.get_json()


def test_content_type_other_than_issued_is_403(app, client, objects):
    if app.config["STORAGE_BACKEND"] != "local":
        pytest.skip("S3 checks its own signed headers")
    run = make_run(app, make_user(app), status="running")
    answer = ticket(client, app, run, contentType="image/png").get_json()
    path = answer["uploadUrl"].split("localhost", 1)[1]
    r = client.put(path, data=b"png", headers={"Content-Type": "text/html"})
    assert r.status_code == 403 and r.get_json()["code"] == "upload_url_mismatch"
    assert objects.keys() == set()


def test_declared_size_over_max_upload_bytes_is_413(backend, app_factory):
    app = app_factory(MAX_UPLOAD_BYTES=1000)
    client = app.test_client()
    run = make_run(app, make_user(app), status="running")
    r = ticket(client, app, run, sizeBytes=1001)
    assert r.status_code == 413, r.get_json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "fileName"),
        ({"fileName": ""}, "fileName"),
        ({"fileName": "a", "contentType": "text/html\r\nX-Evil: 1"}, "contentType"),
        ({"fileName": "a", "sizeBytes": -1}, "sizeBytes"),
    ],
)
def test_bad_upload_request_is_400(app, client, body, field):
    run = make_run(app, make_user(app), status="running")
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts/uploads", json=body, headers=runner_headers(app, run)
    )
    assert r.status_code == 400 and field in r.get_json()["error"], r.get_json()


def test_upload_url_for_a_deleted_run_is_404_and_nothing_kept(backend, app, client, objects):
    owner = make_user(app)
    run = make_run(app, owner, status="completed")
    answer = ticket(client, app, run).get_json()
    sign_in(client, owner)
    assert client.delete(f"/api/design/runs/{run.id}").status_code == 200
    if backend == "local":
        r = put(client, backend, answer, b"late bytes")
        assert r.status_code == 404, r.get_json()
        assert objects.keys() == set()
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts/uploads",
        json={"fileName": "x"},
        headers=runner_headers(app, run),
    )
    assert r.status_code == 404
