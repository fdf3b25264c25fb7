"""storage/s3.py against a real moto server on loopback: the shared contract, parts, memory."""

from __future__ import annotations

import io
import threading

import pytest

from designrun.storage.s3 import S3Storage
from tests.storage import s3server
from tests.storage.contract import MiB, PatternStream, StorageContract, stored_digest

# The moto server (one per module that uses it) and a fresh bucket per test.
moto_endpoint = s3server.moto_endpoint
s3_target = s3server.s3_target

PART = 8 * MiB


class TestS3Storage(StorageContract):
    @pytest.fixture
    def storage(self, s3_target):
        return S3Storage(s3_target.bucket, s3_target.endpoint, s3_target.region)


def test_objects_are_stored_at_the_key_with_their_content_type(s3_target):
    storage = S3Storage(s3_target.bucket, s3_target.endpoint, s3_target.region)
    storage.save_stream("runs/r/page.html", io.BytesIO(b"<p>hi</p>"), "text/html")
    assert s3_target.keys() == {"runs/r/page.html"}
    assert s3_target.get("runs/r/page.html") == b"<p>hi</p>"
    assert s3_target.head("runs/r/page.html")["ContentType"] == "text/html"


def test_region_may_be_left_unset(s3_target, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    storage = S3Storage(s3_target.bucket, s3_target.endpoint, None)
    assert storage.save_stream("no-region", io.BytesIO(b"abc"), None) == 3
    assert s3_target.get("no-region") == b"abc"


def test_delete_prefix_leaves_other_buckets_alone(s3_target):
    other = f"{s3_target.bucket}-other"
    s3_target.client.create_bucket(Bucket=other)
    s3_target.client.put_object(Bucket=other, Key="runs/r1/a", Body=b"keep")
    storage = S3Storage(s3_target.bucket, s3_target.endpoint, s3_target.region)
    storage.save_stream("runs/r1/a", io.BytesIO(b"go"), None)
    assert storage.delete_prefix("runs/r1/") == 1
    assert s3_target.client.get_object(Bucket=other, Key="runs/r1/a")["Body"].read() == b"keep"


def test_delete_prefix_pages_through_the_listing(s3_target):
    keys = [f"runs/many/{i:02d}" for i in range(7)]
    for key in keys:
        s3_target.put(key)
    s3_target.put("runs/keep/x")
    storage = S3Storage(s3_target.bucket, s3_target.endpoint, s3_target.region)
    calls: list[str] = []
    events = storage.client.meta.events
    # Pages of 2 keys instead of S3's 1000, to see the paging with a handful of objects.
    events.register(
        "provide-client-params.s3.ListObjectsV2", lambda params, **_: params.update(MaxKeys=2)
    )
    events.register("before-call.s3.DeleteObjects", lambda model, **_: calls.append(model.name))
    assert storage.delete_prefix("runs/many/") == 7
    assert len(calls) == 4
    assert s3_target.keys() == {"runs/keep/x"}


class _WatchedStream(PatternStream):
    """Records how many bytes were read but not yet acknowledged by a finished UploadPart."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.lock = threading.Lock()
        self.acknowledged = 0
        self.most_in_flight = 0
        self.position_at_first_part: int | None = None
        self.parts = 0

    def read(self, n: int = -1) -> bytes:
        data = super().read(n)
        with self.lock:
            self.most_in_flight = max(self.most_in_flight, self.position - self.acknowledged)
        return data

    def part_starting(self, **_: object) -> None:
        with self.lock:
            self.parts += 1
            if self.position_at_first_part is None:
                self.position_at_first_part = self.position

    def part_done(self, **_: object) -> None:
        with self.lock:
            self.acknowledged += PART


def test_large_stream_is_uploaded_in_parts_without_reading_it_all_first(s3_target):
    storage = S3Storage(s3_target.bucket, s3_target.endpoint, s3_target.region)
    stream = _WatchedStream(64 * MiB)
    events = storage.client.meta.events
    events.register("before-parameter-build.s3.UploadPart", stream.part_starting)
    events.register("after-call.s3.UploadPart", stream.part_done)

    size = storage.save_stream("runs/big/upload.bin", stream, "application/zip")

    assert size == 64 * MiB
    assert stream.parts == 8
    assert s3_target.head("runs/big/upload.bin")["ETag"].strip('"').endswith("-8")
    # The first part left before the stream was read to its end, and what was read ahead of
    # the network stayed a few parts, not the object (boto3's default would allow 80 MiB).
    assert stream.position_at_first_part is not None
    assert stream.position_at_first_part < 64 * MiB
    assert stream.most_in_flight <= 5 * PART, stream.most_in_flight / MiB
    assert stream.largest_read <= PART
    assert stored_digest(storage, "runs/big/upload.bin") == (64 * MiB, stream.digest())


def test_small_stream_is_one_put(s3_target):
    storage = S3Storage(s3_target.bucket, s3_target.endpoint, s3_target.region)
    calls: list[str] = []
    storage.client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.append(model.name)
    )
    storage.save_stream("small", io.BytesIO(b"x" * 1000), None)
    assert calls == ["PutObject"]


def test_failed_multipart_upload_is_aborted(s3_target):
    storage = S3Storage(s3_target.bucket, s3_target.endpoint, s3_target.region)
    stream = PatternStream(40 * MiB, fail_after=20 * MiB)
    with pytest.raises(OSError, match="client went away"):
        storage.save_stream("runs/broken/upload.bin", stream, None)
    assert s3_target.keys() == set()
    uploads = s3_target.client.list_multipart_uploads(Bucket=s3_target.bucket)
    assert uploads.get("Uploads", []) == []
