"""API.md § POST /api/runner/runs/:runId/artifacts, listing them, and deleting a run's objects.

Every test runs twice: on the local backend and on S3 (a moto server on loopback, configured
through the API.md environment variables). ``objects`` looks into the store directly.
"""

from __future__ import annotations

import io
import json
import tracemalloc
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.factories import legacy_headers, make_run, make_user, runner_headers, sign_in
from tests.storage import s3server
from tests.storage.contract import MiB, PatternStream

# The moto server (one per module that uses it) and a fresh bucket per test.
moto_endpoint = s3server.moto_endpoint
s3_target = s3server.s3_target

MAX_SAFE_INTEGER = 2**53 - 1


class LocalObjects:
    """The local backend's folder seen as a bucket (every file, temporary ones included)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def keys(self) -> set[str]:
        if not self.root.exists():
            return set()
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}

    def put(self, key: str, body: bytes = b"x") -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()


@pytest.fixture(params=["local", "s3"])
def backend(request, monkeypatch):
    if request.param == "s3":
        target = request.getfixturevalue("s3_target")
        monkeypatch.setenv("STORAGE_BACKEND", "s3")
        monkeypatch.setenv("S3_BUCKET", target.bucket)
        monkeypatch.setenv("S3_ENDPOINT_URL", target.endpoint)
        monkeypatch.setenv("S3_REGION", target.region)
    return request.param


@pytest.fixture
def app(backend, app_factory):
    return app_factory()


@pytest.fixture
def objects(request, backend, app):
    if backend == "s3":
        return request.getfixturevalue("s3_target")
    return LocalObjects(app.config["STORAGE_LOCAL_DIR"])


def register(client, app, run, body, headers=None):
    return client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        json=body,
        headers=headers or runner_headers(app, run),
    )


def upload(client, app, run, data, headers=None, **kwargs):
    return client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data=data,
        content_type="multipart/form-data",
        headers=headers or runner_headers(app, run),
        **kwargs,
    )


def raw_multipart(fields, file_body=b"", filename="out.bin", part_type=None, with_file=True):
    """A hand-built multipart body, to send a file part with no Content-Type at all."""
    boundary = "----designrun-test-boundary"
    chunks = []
    for name, value in fields.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        )
    body = "".join(chunks).encode()
    if with_file:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
        if part_type is not None:
            head += f"\r\nContent-Type: {part_type}"
        body += head.encode() + b"\r\n\r\n" + file_body + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def artifact_rows(app, run_id):
    from designrun.extensions import db
    from designrun.models import Artifact

    with app.app_context():
        query = select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.created_at)
        return [
            (a.artifact_type, a.storage_key, a.content_type, a.size_bytes, a.metadata_)
            for a in db.session.scalars(query)
        ]


def is_uuid(value) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError):
        return False
    return True


def assert_invalid(r, field):
    assert r.status_code == 400, r.get_json()
    body = r.get_json()
    assert body["ok"] is False and body["code"] == "invalid_request", body
    assert field in body["error"], body


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
        "storageKey": f"runs/{run.id}/site.zip",
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
        pytest.param("RUNS/elsewhere/x", id="upper-case-runs-is-outside"),
        pytest.param("{upper}/x.png", id="own-id-upper-case"),
        pytest.param("k" * 1024, id="1024-bytes"),
    ],
)
def test_acceptable_keys_are_registered_as_given(app, client, key):
    run = make_run(app, make_user(app), status="running")
    key = key.replace("{upper}", f"runs/{str(run.id).upper()}")
    r = register(client, app, run, {"artifactType": "file", "storageKey": key})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["storageKey"] == key


BAD_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("/abs/x", id="leading-slash"),
    pytest.param("a/../b", id="dotdot"),
    pytest.param("./a", id="dot"),
    pytest.param("a//b", id="empty-segment"),
    pytest.param("a/", id="trailing-slash"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("a\x01b", id="control"),
    pytest.param("a\x7fb", id="delete-char"),
    pytest.param("a\nb", id="newline"),
    pytest.param("k" * 1025, id="1025-bytes"),
    pytest.param("é" * 513, id="1026-bytes-in-513-chars"),
    pytest.param("runs/{other}/x.png", id="another-runs-prefix"),
    pytest.param("runs/not-a-run/x.png", id="runs-non-uuid"),
]


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
        "storageKey": f"runs/{run.id}/x",
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
    "key", ["exports/{run}/site.zip", "runs/{run}/custom/name.bin", "runs/{RUN}/upper.bin"]
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
    """A 300-byte segment is a fine S3 key but longer than a file name may be on disk."""
    run = make_run(app, make_user(app), status="running")
    key = f"runs/{run.id}/" + "n" * 300
    r = upload_to(client, app, run, key)
    if backend == "local":
        assert_invalid(r, "storageKey")
        assert objects.keys() == set()
        assert artifact_rows(app, run.id) == []
    else:
        assert r.status_code == 200, r.get_json()
        assert objects.keys() == {key}


@pytest.mark.parametrize(
    ("first", "second"),
    [("x/a", "x/a/b"), ("x/a/b", "x/a"), ("x/a", "x/a/b/c")],
)
def test_object_and_folder_clash_is_400_on_local_disk(backend, app, client, objects, first, second):
    run = make_run(app, make_user(app), status="running")
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


# --- listing and deleting ----------------------------------------------------------------------


def test_owner_lists_artifacts_and_another_account_gets_404(app, client):
    owner = make_user(app)
    run = make_run(app, owner, status="running")
    register(
        client,
        app,
        run,
        {
            "artifactType": "bundle",
            "storageKey": "exports/site.zip",
            "contentType": "application/zip",
            "sizeBytes": 10,
            "metadata": {"a": 1},
        },
    )
    uploaded = upload(
        client, app, run, {"artifactType": "shot", "file": (io.BytesIO(b"png"), "s.png")}
    ).get_json()

    r = client.get(f"/api/design/runs/{run.id}/artifacts")
    assert r.status_code == 401, r.get_json()

    sign_in(client, owner)
    r = client.get(f"/api/design/runs/{run.id}/artifacts")
    assert r.status_code == 200, r.get_json()
    artifacts = r.get_json()["artifacts"]
    assert [a["artifactType"] for a in artifacts] == ["bundle", "shot"]
    first, second = artifacts
    assert set(first) == {
        "id",
        "runId",
        "artifactType",
        "storageKey",
        "contentType",
        "sizeBytes",
        "metadata",
        "createdAt",
    }
    assert first["runId"] == str(run.id)
    assert (first["storageKey"], first["contentType"], first["sizeBytes"]) == (
        "exports/site.zip",
        "application/zip",
        10,
    )
    assert first["metadata"] == {"a": 1}
    assert first["createdAt"].endswith("Z")
    assert second["id"] == uploaded["artifactId"]
    assert (second["storageKey"], second["contentType"], second["sizeBytes"]) == (
        uploaded["storageKey"],
        "image/png",
        3,
    )
    assert second["metadata"] == {}

    stranger = app.test_client()
    sign_in(stranger, make_user(app))
    r = stranger.get(f"/api/design/runs/{run.id}/artifacts")
    assert r.status_code == 404, r.get_json()
    r = stranger.delete(f"/api/design/runs/{run.id}")
    assert r.status_code == 404, r.get_json()
    assert len(artifact_rows(app, run.id)) == 2


def count_rows(app, model, run_id):
    from designrun.extensions import db

    with app.app_context():
        return db.session.scalar(select(func.count()).where(model.run_id == run_id))


def test_delete_removes_the_runs_objects_and_rows_but_nothing_else(app, client, objects):
    from designrun.models import Artifact, RunEvent

    owner = make_user(app)
    run = make_run(app, owner, status="running")
    other = make_run(app, owner, status="running")
    first = upload(client, app, run, {"artifactType": "a", "file": (io.BytesIO(b"1"), "a.txt")})
    second = upload(
        client,
        app,
        run,
        {
            "artifactType": "b",
            "storageKey": f"runs/{run.id}/deep/er/b.txt",
            "file": (io.BytesIO(b"2"), "b.txt"),
        },
    )
    outside = upload(
        client,
        app,
        run,
        {
            "artifactType": "c",
            "storageKey": f"exports/{run.id}/c.txt",
            "file": (io.BytesIO(b"3"), "c.txt"),
        },
    )
    objects.put("shared/registered.bin", b"elsewhere")
    register(client, app, run, {"artifactType": "d", "storageKey": "shared/registered.bin"})
    objects.put(f"runs/{run.id}/loose.txt", b"not registered, still the run's")
    others = upload(client, app, other, {"artifactType": "o", "file": (io.BytesIO(b"o"), "o")})
    objects.put(f"runs/{run.id}x/lookalike.txt", b"another prefix")
    client.post(
        f"/api/runner/runs/{run.id}/events",
        json={"eventType": "log", "message": "hi"},
        headers=runner_headers(app, run),
    )
    for r in (first, second, outside, others):
        assert r.status_code == 200, r.get_json()
    kept = {
        outside.get_json()["storageKey"],
        "shared/registered.bin",
        others.get_json()["storageKey"],
        f"runs/{run.id}x/lookalike.txt",
    }
    assert objects.keys() == kept | {
        first.get_json()["storageKey"],
        second.get_json()["storageKey"],
        f"runs/{run.id}/loose.txt",
    }

    sign_in(client, owner)
    r = client.delete(f"/api/design/runs/{run.id}")
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"ok": True}

    assert objects.keys() == kept
    assert objects.get("shared/registered.bin") == b"elsewhere"
    assert count_rows(app, Artifact, run.id) == 0
    assert count_rows(app, RunEvent, run.id) == 0
    assert count_rows(app, Artifact, other.id) == 1
    assert client.get(f"/api/design/runs/{run.id}").status_code == 404
    assert client.get(f"/api/design/runs/{run.id}/artifacts").status_code == 404
    assert client.get(f"/api/design/runs/{other.id}/artifacts").status_code == 200
    r = register(client, app, run, {"artifactType": "late", "storageKey": f"runs/{run.id}/l"})
    assert r.status_code == 404, r.get_json()


def test_delete_also_removes_objects_under_the_upper_case_run_id(app, client, objects):
    owner = make_user(app)
    run = make_run(app, owner, status="completed")
    key = f"runs/{str(run.id).upper()}/shot.png"
    r = upload(
        client, app, run, {"artifactType": "f", "storageKey": key, "file": (io.BytesIO(b"1"), "s")}
    )
    assert r.status_code == 200, r.get_json()
    assert objects.keys() == {key}
    sign_in(client, owner)
    assert client.delete(f"/api/design/runs/{run.id}").status_code == 200
    assert objects.keys() == set()
