"""Artifacts: JSON registration, and multipart uploads streamed from disk (retried whole)."""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from designrun.runner import RunnerClient
from tests.runner.fakeserver import FakeRunnerApi

ClientFactory = Callable[..., RunnerClient]


def test_register_artifact_sends_the_fields_in_camel_case(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake)
    answer = client.register_artifact(
        "image",
        "elsewhere/hero.png",
        content_type="image/png",
        size_bytes=1234,
        metadata={"width": 800},
    )
    assert answer["storageKey"] == "elsewhere/hero.png"
    assert answer["artifactId"] == fake.artifacts[0]["id"]
    key = fake.artifacts[0]["idempotencyKey"]
    assert fake.artifacts[0] == {
        "id": answer["artifactId"],
        "artifactType": "image",
        "storageKey": "elsewhere/hero.png",
        "contentType": "image/png",
        "sizeBytes": 1234,
        "metadata": {"width": 800},
        "idempotencyKey": key,
    }
    client.register_artifact("image", "elsewhere/other.png")
    assert fake.artifacts[1]["idempotencyKey"] not in {None, key}


def test_upload_artifact_sends_multipart_with_the_fields_and_the_bytes(
    fake: FakeRunnerApi, client_factory: ClientFactory, tmp_path: Path
) -> None:
    data = (b"--designrun-not-a-boundary\r\n\x00\xff" * 3000) + os.urandom(10_000)
    path = tmp_path / "site.zip"
    path.write_bytes(data)
    client = client_factory(fake)
    answer = client.upload_artifact(
        path,
        "site",
        storage_key="outputs/site.zip",
        content_type="application/zip",
        metadata={"pages": 3},
    )
    assert answer["storageKey"] == "outputs/site.zip"
    stored = fake.artifacts[0]
    assert stored["artifactType"] == "site"
    assert stored["storageKey"] == "outputs/site.zip"
    assert stored["contentType"] == "application/zip"
    assert json.loads(stored["metadata"]) == {"pages": 3}
    assert stored["file"]["filename"] == "site.zip"
    assert stored["file"]["contentType"] == "application/zip"
    assert stored["file"]["data"] == data


def test_upload_artifact_without_options_guesses_the_part_type(
    fake: FakeRunnerApi, client_factory: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "index.html"
    path.write_text("<h1>hi</h1>")
    client_factory(fake).upload_artifact(str(path), "page")
    stored = fake.artifacts[0]
    assert set(stored) == {"id", "artifactType", "idempotencyKey", "file"}
    assert stored["file"]["contentType"] == "text/html"
    assert stored["file"]["data"] == b"<h1>hi</h1>"


def test_a_retried_upload_sends_the_whole_file_again(
    fake: FakeRunnerApi, client_factory: ClientFactory, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    path = tmp_path / "out.bin"
    path.write_bytes(data)
    fake.forced["artifacts"] = [(503, {"ok": False, "code": "database_unavailable"}, {})]
    client_factory(fake).upload_artifact(path, "binary")
    assert fake.outcomes("artifacts") == ["forced", "ok"]
    assert len(fake.artifacts) == 1
    assert fake.artifacts[0]["file"]["data"] == data


def test_an_upload_is_streamed_not_read_whole_into_memory(
    fake: FakeRunnerApi, client_factory: ClientFactory, tmp_path: Path
) -> None:
    size = 16 * 1024 * 1024
    path = tmp_path / "big.bin"
    with path.open("wb") as file:
        chunk = os.urandom(1024 * 1024)
        for _ in range(size // len(chunk)):
            file.write(chunk)
    fake.stream_uploads = True  # the fake counts the bytes instead of keeping them
    client = client_factory(fake)
    tracemalloc.start()
    try:
        client.upload_artifact(path, "binary")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    received = fake.artifacts[0]["stream"]["received"]
    assert size < received < size + 2048
    assert peak < size // 8, f"peak {peak} bytes while uploading {size}"


def test_a_missing_file_fails_before_any_request(
    fake: FakeRunnerApi, client_factory: ClientFactory, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        client_factory(fake).upload_artifact(tmp_path / "nope.bin", "binary")
    assert fake.seen == []


def test_large_file_falls_back_to_multipart_when_the_server_has_no_direct_uploads(
    fake: FakeRunnerApi, client_factory: ClientFactory, tmp_path: Path
) -> None:
    """An older server answers 404 to POST …/artifacts/uploads: multipart, for the whole run."""
    path = tmp_path / "video.mp4"
    path.write_bytes(b"v" * 5000)
    client = client_factory(fake, direct_upload_threshold=1000)
    first = client.upload_artifact(path, "video")
    second = client.upload_artifact(path, "video")
    assert first["artifactId"] != second["artifactId"]
    assert [a["file"]["data"] for a in fake.artifacts] == [b"v" * 5000, b"v" * 5000]
    assert client._direct_threshold is None  # remembered: no second 404 round trip
