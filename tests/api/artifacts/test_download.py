"""API.md § Artifacts at any size: the content endpoint (GET/HEAD, validators, one range).

Local storage streams through the service; s3 answers a 302 to a presigned GET (followed here
with plain HTTP), or streams too with S3_PRESIGN_DOWNLOADS=false.
"""

from __future__ import annotations

import io

import pytest
import requests

from tests.api.artifacts.support import upload
from tests.factories import make_run, make_user, sign_in

BODY = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture(params=["presign", "stream"])
def mode(request, backend, monkeypatch):
    if request.param == "presign" and backend == "local":
        pytest.skip("local storage always streams")
    if request.param == "stream" and backend == "s3":
        monkeypatch.setenv("S3_PRESIGN_DOWNLOADS", "false")
    return request.param


@pytest.fixture
def stored(mode, app, client):
    owner = make_user(app)
    run = make_run(app, owner, status="completed")
    r = upload(
        client,
        app,
        run,
        {"artifactType": "f", "file": (io.BytesIO(BODY), "page one.html", "text/html")},
    )
    assert r.status_code == 200, r.get_json()
    sign_in(client, owner)
    return f"/api/design/runs/{run.id}/artifacts/{r.get_json()['artifactId']}/content"


def fetch(client, mode, url, method="GET", headers=None):
    """(status, headers, body) of a download, following S3's redirect with plain HTTP."""
    with client.open(url, method=method, headers=headers or {}) as r:
        if mode == "presign" and r.status_code == 302:
            assert r.headers["Cache-Control"] == "no-store"
            followed = requests.request(
                method, r.headers["Location"], headers=headers or {}, timeout=30
            )
            return followed.status_code, followed.headers, followed.content
        return r.status_code, r.headers, r.data


def test_whole_body_with_validators_as_an_attachment(mode, client, stored):
    status, headers, body = fetch(client, mode, stored)
    assert status == 200
    assert body == BODY
    assert headers["Content-Length"] == str(len(BODY))
    assert headers["Content-Disposition"] == 'attachment; filename="page_one.html"'
    assert headers["ETag"].startswith('"')
    assert headers["Last-Modified"]
    if mode == "stream":
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Accept-Ranges"] == "bytes"
        assert "sandbox" in headers["Content-Security-Policy"]


def test_head_has_the_headers_and_no_body(mode, client, stored):
    status, headers, body = fetch(client, mode, stored, method="HEAD")
    assert status == 200 and body == b""
    assert headers["Content-Length"] == str(len(BODY))


def test_if_none_match_is_304(mode, client, stored):
    _, headers, _ = fetch(client, mode, stored)
    with client.get(stored, headers={"If-None-Match": headers["ETag"]}) as r:
        assert r.status_code == 304 and r.data == b""
        assert r.headers["ETag"] == headers["ETag"]
    with client.get(stored, headers={"If-None-Match": '"other"'}) as r:
        assert r.status_code in (200, 302)


def test_if_modified_since_is_304(mode, client, stored):
    _, headers, _ = fetch(client, mode, stored)
    with client.get(stored, headers={"If-Modified-Since": headers["Last-Modified"]}) as r:
        assert r.status_code == 304


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-3", 0, 4),
        ("bytes=100-", 100, 10240),
        ("bytes=-10", 10230, 10240),
        ("bytes=10000-99999", 10000, 10240),
    ],
)
def test_one_range_is_206(mode, client, stored, header, start, stop):
    status, headers, body = fetch(client, mode, stored, headers={"Range": header})
    assert status == 206
    assert body == BODY[start:stop]
    assert headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(BODY)}"


def test_unsatisfiable_range_is_416_json(mode, client, stored):
    if mode == "presign":
        pytest.skip("S3 answers for itself")
    with client.get(stored, headers={"Range": "bytes=20000-"}) as r:
        assert r.status_code == 416
        assert r.headers["Content-Range"] == f"bytes */{len(BODY)}"
        assert r.get_json()["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=garbage", "pages=1-2", "bytes=5-2"])
def test_several_ranges_or_garbage_are_the_whole_body(mode, client, stored, header):
    if mode == "presign":
        pytest.skip("S3 answers for itself")
    with client.get(stored, headers={"Range": header}) as r:
        assert r.status_code == 200 and r.data == BODY


def test_if_range_of_another_version_sends_the_whole_body(mode, client, stored):
    if mode == "presign":
        pytest.skip("S3 answers for itself")
    with client.get(stored, headers={"Range": "bytes=0-3", "If-Range": '"old"'}) as r:
        assert r.status_code == 200 and r.data == BODY
