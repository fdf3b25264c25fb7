"""API.md § POST /api/runner/runs/:runId/artifacts: multipart upload into storage."""

from __future__ import annotations

import io
import json
import tracemalloc
import uuid

import pytest

from tests.api.artifacts.support import (
    BAD_KEYS,
    LocalObjects,
    artifact_rows,
    assert_invalid,
    raw_multipart,
    register,
    upload,
)
from tests.factories import make_run, make_user, runner_headers
from tests.storage.contract import MiB, PatternStream

# --- multipart upload --------------------------------------------------------------------------


def test_upload_is_stored_at_the_default_key_with_its_bytes(app, client, objects):
    run = make_run(app, make_user(app), status="running")
    content = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    r = upload(
        client,
        app,
        run,
        {
            "artifactType": "screenshot",
            "file": (io.BytesIO(content), "My Shot (1).png", "image/png"),
        },
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert set(body) == {"ok", "runStatus", "artifactId", "storageKey", "sizeBytes"}
    assert body["runStatus"] == "running"
    assert body["storageKey"] == f"runs/{run.id}/{body['artifactId']}/My_Shot__1_.png"
    assert body["sizeBytes"] == len(content)
    assert objects.keys() == {body["storageKey"]}
    assert objects.get(body["storageKey"]) == content
    assert artifact_rows(app, run.id) == [
        ("screenshot", body["storageKey"], "image/png", len(content), {})
    ]


@pytest.mark.parametrize(
    ("filename", "stored_as"),
    [("../../etc/passwd", "passwd"), ("..", "file"), ("été 2026.txt", "_t__2026.txt")],
)
def test_default_key_uses_a_safe_file_name(app, client, objects, filename, stored_as):
    run = make_run(app, make_user(app), status="running")
    r = upload(client, app, run, {"artifactType": "f", "file": (io.BytesIO(b"1"), filename)})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["storageKey"] == f"runs/{run.id}/{body['artifactId']}/{stored_as}"
    assert objects.keys() == {body["storageKey"]}


def test_file_part_without_content_type_is_octet_stream(app, client, objects):
    run = make_run(app, make_user(app), status="running")
    data, content_type = raw_multipart({"artifactType": "log"}, b"plain bytes", "run.log")
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data=data,
        content_type=content_type,
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200, r.get_json()
    key = r.get_json()["storageKey"]
    assert objects.get(key) == b"plain bytes"
    assert artifact_rows(app, run.id)[0][2] == "application/octet-stream"


def test_content_type_field_wins_over_the_file_part(app, client):
    run = make_run(app, make_user(app), status="running")
    r = upload(
        client,
        app,
        run,
        {
            "artifactType": "page",
            "contentType": "text/html",
            "file": (io.BytesIO(b"<p>"), "index.html", "application/octet-stream"),
        },
    )
    assert r.status_code == 200, r.get_json()
    assert artifact_rows(app, run.id)[0][2] == "text/html"


def test_over_long_file_part_type_is_400_and_nothing_stored(app, client, objects):
    run = make_run(app, make_user(app), status="running")
    data, content_type = raw_multipart({"artifactType": "f"}, b"x", "x.bin", "a/" + "b" * 300)
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data=data,
        content_type=content_type,
        headers=runner_headers(app, run),
    )
    assert_invalid(r, "contentType")
    assert objects.keys() == set()
    assert artifact_rows(app, run.id) == []


def test_size_comes_from_the_bytes_not_the_form(app, client):
    run = make_run(app, make_user(app), status="running")
    r = upload(
        client,
        app,
        run,
        {"artifactType": "f", "sizeBytes": "999", "file": (io.BytesIO(b"12345"), "a.bin")},
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["sizeBytes"] == 5
    assert artifact_rows(app, run.id)[0][3] == 5


def test_empty_file_is_a_zero_byte_artifact(app, client, objects):
    run = make_run(app, make_user(app), status="running")
    r = upload(client, app, run, {"artifactType": "f", "file": (io.BytesIO(b""), "empty.txt")})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["sizeBytes"] == 0
    assert objects.get(r.get_json()["storageKey"]) == b""


@pytest.mark.parametrize(
    "key", ["runs/{run}/custom/name.bin", "runs/{RUN}/upper.bin", "RUNS/{run}/upper-runs.bin"]
)
def test_explicit_storage_key_is_honoured(app, client, objects, key):
    run = make_run(app, make_user(app), status="running")
    key = key.replace("{run}", str(run.id)).replace("{RUN}", str(run.id).upper())
    r = upload(
        client,
        app,
        run,
        {"artifactType": "f", "storageKey": key, "file": (io.BytesIO(b"zip!"), "ignored.zip")},
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["storageKey"] == key
    assert objects.keys() == {key}
    assert objects.get(key) == b"zip!"


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unacceptable_upload_key_is_400_and_nothing_stored(app, client, objects, key):
    run = make_run(app, make_user(app), status="running")
    key = key.replace("{other}", str(uuid.uuid4()))
    data, content_type = raw_multipart({"artifactType": "f", "storageKey": key}, b"x", "x.bin")
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data=data,
        content_type=content_type,
        headers=runner_headers(app, run),
    )
    assert_invalid(r, "storageKey")
    assert objects.keys() == set()
    assert artifact_rows(app, run.id) == []


def upload_to(client, app, run, key, content=b"x"):
    return upload(
        client,
        app,
        run,
        {"artifactType": "f", "storageKey": key, "file": (io.BytesIO(content), "f.bin")},
    )


def test_key_the_local_folder_cannot_hold_is_400_not_500(backend, app, client, objects):
    """A 300-byte segment is a fine S3 key but longer than a file name may be on disk: refused
    on every backend, so that a key registered on S3 stays servable after a move (issue 6 #7)."""
    run = make_run(app, make_user(app), status="running")
    key = f"runs/{run.id}/" + "n" * 300
    r = upload_to(client, app, run, key)
    assert_invalid(r, "storageKey")
    assert objects.keys() == set()
    assert artifact_rows(app, run.id) == []
    r = register(client, app, run, {"artifactType": "f", "storageKey": key})
    assert_invalid(r, "storageKey")


@pytest.mark.parametrize(
    ("first", "second"),
    [("x/a", "x/a/b"), ("x/a/b", "x/a"), ("x/a", "x/a/b/c")],
)
def test_object_and_folder_clash_is_400_on_local_disk(backend, app, client, objects, first, second):
    run = make_run(app, make_user(app), status="running")
    first, second = f"runs/{run.id}/{first}", f"runs/{run.id}/{second}"
    assert upload_to(client, app, run, first, b"1").status_code == 200
    r = upload_to(client, app, run, second, b"2")
    if backend == "local":
        assert_invalid(r, "storageKey")
        assert objects.keys() == {first}
        assert objects.get(first) == b"1"
        assert len(artifact_rows(app, run.id)) == 1
    else:  # S3 keys are flat: both exist side by side
        assert r.status_code == 200, r.get_json()
        assert objects.keys() == {first, second}


def test_metadata_is_a_json_string(app, client):
    run = make_run(app, make_user(app), status="running")
    metadata = {"width": 1280, "tags": ["hero", "été"], "nested": {"a": None}}
    r = upload(
        client,
        app,
        run,
        {
            "artifactType": "f",
            "metadata": json.dumps(metadata),
            "file": (io.BytesIO(b"1"), "a.bin"),
        },
    )
    assert r.status_code == 200, r.get_json()
    assert artifact_rows(app, run.id)[0][4] == metadata


@pytest.mark.parametrize(
    "raw", ["{", "[1, 2]", '"text"', "42", "NaN", '{"a": NaN}', json.dumps({"k": "x" * 65_536})]
)
def test_malformed_metadata_is_400_and_nothing_stored(app, client, objects, raw):
    run = make_run(app, make_user(app), status="running")
    r = upload(
        client,
        app,
        run,
        {"artifactType": "f", "metadata": raw, "file": (io.BytesIO(b"1"), "a.bin")},
    )
    assert_invalid(r, "metadata")
    assert objects.keys() == set()
    assert artifact_rows(app, run.id) == []


def test_missing_file_part_is_400(app, client, objects):
    run = make_run(app, make_user(app), status="running")
    data, content_type = raw_multipart({"artifactType": "f"}, with_file=False)
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data=data,
        content_type=content_type,
        headers=runner_headers(app, run),
    )
    assert_invalid(r, "file")
    assert objects.keys() == set()


@pytest.mark.parametrize("fields", [{}, {"artifactType": ""}, {"artifactType": "t" * 101}])
def test_missing_or_bad_artifact_type_is_400_and_nothing_stored(app, client, objects, fields):
    run = make_run(app, make_user(app), status="running")
    r = upload(client, app, run, {**fields, "file": (io.BytesIO(b"data"), "a.bin")})
    assert_invalid(r, "artifactType")
    assert objects.keys() == set()
    assert artifact_rows(app, run.id) == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_neither_json_nor_multipart_is_415(app, client, content_type):
    run = make_run(app, make_user(app), status="running")
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data=b"artifactType=f",
        content_type=content_type,
        headers=runner_headers(app, run),
    )
    assert r.status_code == 415, r.get_json()
    assert r.get_json()["code"] == "unsupported_media_type"


def test_body_over_max_upload_bytes_is_413_and_nothing_stored(backend, app_factory, objects):
    app = app_factory(MAX_UPLOAD_BYTES=64 * 1024)
    objects = LocalObjects(app.config["STORAGE_LOCAL_DIR"]) if backend == "local" else objects
    client = app.test_client()
    run = make_run(app, make_user(app), status="running")
    big = b"x" * (64 * 1024 + 1)
    r = upload(client, app, run, {"artifactType": "f", "file": (io.BytesIO(big), "big.bin")})
    assert r.status_code == 413, r.get_json()
    assert r.get_json()["code"] == "payload_too_large"
    r = register(
        client,
        app,
        run,
        {"artifactType": "f", "storageKey": f"runs/{run.id}/x", "metadata": {"k": big.decode()}},
    )
    assert r.status_code == 413, r.get_json()
    small = upload(client, app, run, {"artifactType": "f", "file": (io.BytesIO(b"ok"), "s.bin")})
    assert small.status_code == 200, small.get_json()
    assert objects.keys() == {small.get_json()["storageKey"]}
    assert len(artifact_rows(app, run.id)) == 1


def test_upload_for_unknown_run_is_404_and_nothing_stored(app, client, objects):
    missing = uuid.uuid4()
    r = client.post(
        f"/api/runner/runs/{missing}/artifacts",
        data={"artifactType": "f", "file": (io.BytesIO(b"data"), "a.bin")},
        content_type="multipart/form-data",
        headers=runner_headers(app, missing),
    )
    assert r.status_code == 404, r.get_json()
    assert objects.keys() == set()


class _MultipartStream(io.RawIOBase):
    """A multipart body around a PatternStream, produced as it is read (no client temp file)."""

    def __init__(self, fields, payload: PatternStream) -> None:
        head, content_type = raw_multipart(fields, b"", "big.bin", "application/octet-stream")
        marker = head.rindex(b"\r\n--")  # split the hand-built body around the empty file
        self.head, self.tail = head[:marker], head[marker:]
        self.payload = payload
        self.content_type = content_type
        self.length = len(self.head) + payload.size + len(self.tail)

    def readable(self) -> bool:
        return True

    # The test client measures the body by seeking to its end and back before reading it.
    _mark = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._mark

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        assert self.payload.position == 0, "only measurable before it is read"
        self._mark = self.length + offset if whence == io.SEEK_END else offset
        return self._mark

    def read(self, n: int = -1) -> bytes:
        n = self.length if n is None or n < 0 else n
        out = b""
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
        if len(out) < n:
            out += self.payload.read(n - len(out))
        if len(out) < n and self.tail:
            take = n - len(out)
            out, self.tail = out + self.tail[:take], self.tail[take:]
        return out

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def test_large_upload_is_streamed_not_held_in_memory(backend, app, client, objects):
    if backend != "local":
        pytest.skip("moto runs in this process: its memory would be counted too")
    run = make_run(app, make_user(app), status="running")
    body = _MultipartStream({"artifactType": "f"}, PatternStream(32 * MiB))
    tracemalloc.start()
    try:
        r = client.post(
            f"/api/runner/runs/{run.id}/artifacts",
            input_stream=body,
            content_length=body.length,
            content_type=body.content_type,
            headers=runner_headers(app, run),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["sizeBytes"] == 32 * MiB
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB for a 32 MiB upload"
    assert objects.keys() == {r.get_json()["storageKey"]}


def test_retried_upload_keeps_one_artifact_and_one_object(app, client, objects):
    run = make_run(app, make_user(app), status="running")

    def send():
        data = {
            "artifactType": "source",
            "idempotencyKey": "upload-1",
            "file": (io.BytesIO(b"<h1>hi</h1>"), "index.html", "text/html"),
        }
        r = upload(client, app, run, data)
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    first, again = send(), send()
    assert again["artifactId"] == first["artifactId"]
    assert again["storageKey"] == first["storageKey"]
    assert len(artifact_rows(app, run.id)) == 1
    assert objects.keys() == {first["storageKey"]}
