"""Issue 9 #3: a multipart upload streams its file part to the store as it arrives
(api/multipart.py): no temporary copy first, S3 multipart upload for large ones, aborted when
the body breaks off. A form whose file comes before its fields still works (spooled first)."""

from __future__ import annotations

import io

from designrun.storage import get_storage
from tests.api.artifacts.support import artifact_rows, raw_multipart
from tests.api.artifacts.test_upload import _MultipartStream
from tests.factories import make_run, make_user, runner_headers
from tests.storage.contract import MiB, PatternStream, stored_digest


def post(client, app, run, body, **kwargs):
    return client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        input_stream=body,
        content_length=body.length,
        content_type=body.content_type,
        headers=runner_headers(app, run),
        **kwargs,
    )


def test_the_store_starts_receiving_before_the_body_has_arrived(
    backend, app, client, objects, monkeypatch
):
    run = make_run(app, make_user(app), status="running")
    payload = PatternStream(20 * MiB)
    body = _MultipartStream({"artifactType": "f", "contentType": "video/webm"}, payload)
    with app.app_context():
        storage = get_storage()
    original = storage.save_stream
    seen: list[int] = []

    def save_stream(key, stream, content_type, limit=None):
        seen.append(payload.position)  # how much of the file had arrived when storing began
        return original(key, stream, content_type, limit)

    monkeypatch.setattr(storage, "save_stream", save_stream)
    r = post(client, app, run, body)
    assert r.status_code == 200, r.get_json()
    assert seen and seen[0] < 2 * MiB, seen
    with app.app_context():
        assert stored_digest(get_storage(), r.get_json()["storageKey"]) == (
            payload.size,
            payload.digest(),
        )
    assert artifact_rows(app, run.id)[0][2:4] == ("video/webm", 20 * MiB)


def test_a_body_that_breaks_off_stores_nothing_and_aborts_the_s3_upload(
    backend, app, client, objects
):
    run = make_run(app, make_user(app), status="running")
    payload = PatternStream(20 * MiB, fail_after=12 * MiB)  # past S3's first 8 MiB part
    body = _MultipartStream({"artifactType": "f"}, payload)
    try:
        r = post(client, app, run, body)
    except OSError:
        r = None  # the test client re-raises what the app let through: the client went away
    assert r is None or r.status_code >= 400
    assert artifact_rows(app, run.id) == []
    assert {k for k in objects.keys() if not k.startswith(".partial/")} == set()
    if backend == "s3":
        uploads = objects.client.list_multipart_uploads(Bucket=objects.bucket)
        assert uploads.get("Uploads", []) == []
    else:
        assert objects.keys() == set()  # no temporary file left either


def test_file_before_its_fields_is_still_accepted(backend, app, client, objects):
    run = make_run(app, make_user(app), status="running")
    boundary = "----order-test"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nhello\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="artifactType"\r\n\r\nnotes\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="storageKey"\r\n\r\n'
        f"runs/{run.id}/notes.txt\r\n--{boundary}--\r\n"
    ).encode()
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["storageKey"] == f"runs/{run.id}/notes.txt"
    assert objects.get(f"runs/{run.id}/notes.txt") == b"hello"


def test_a_second_file_part_is_ignored(app, client, objects):
    run = make_run(app, make_user(app), status="running")
    body, content_type = raw_multipart({"artifactType": "f"}, b"first", "a.bin")
    extra = b'--x\r\nContent-Disposition: form-data; name="file"; filename="b"\r\n\r\nsecond\r\n'
    boundary = content_type.split("boundary=")[1]
    body = body.replace(
        f"--{boundary}--".encode(),
        extra.replace(b"--x", f"--{boundary}".encode()) + f"--{boundary}--".encode(),
    )
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data=body,
        content_type=content_type,
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200, r.get_json()
    assert objects.get(r.get_json()["storageKey"]) == b"first"


def test_malformed_forms_are_400_and_store_nothing(app, client, objects):
    run = make_run(app, make_user(app), status="running")
    for body, content_type in [
        (b"--b\r\nno headers end", "multipart/form-data; boundary=b"),
        (b"anything", "multipart/form-data"),
        (raw_multipart({"artifactType": "f"}, b"x")[0][:-8], raw_multipart({})[1]),
    ]:
        r = client.post(
            f"/api/runner/runs/{run.id}/artifacts",
            data=io.BytesIO(body),
            content_type=content_type,
            headers=runner_headers(app, run),
        )
        assert r.status_code == 400, (body, r.get_json())
        assert r.get_json()["ok"] is False
    assert objects.keys() == set()
    assert artifact_rows(app, run.id) == []


def test_the_file_part_reads_whole_chunks_as_a_file_does():
    """read(n) gives n bytes until the part ends, whatever pieces the decoder cuts: a short
    read made boto3's non-seekable upload keep every part in memory (twice the file's size)."""
    from designrun.api.multipart import _Parser, _PartReader

    data = bytes(range(256)) * 40_000  # ~10 MiB
    body, content_type = raw_multipart({"artifactType": "f"}, data)
    boundary = content_type.split("boundary=")[1].encode()
    parser = _Parser(io.BytesIO(body), boundary, 1024 * 1024)
    while not type(parser.next_event()).__name__ == "File":
        pass
    reader = _PartReader(parser)
    sizes = []
    while chunk := reader.read(3 * MiB):
        sizes.append(len(chunk))
    assert sizes[:-1] == [3 * MiB] * (len(sizes) - 1)
    assert sum(sizes) == len(data)
