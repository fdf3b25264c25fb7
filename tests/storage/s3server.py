"""A real moto S3 server on loopback, shared by the storage and API tests.

A test module makes the fixtures its own by assignment (``s3_target = s3server.s3_target``,
and likewise ``moto_endpoint``, which it depends on). ``moto_endpoint`` is session-scoped: one
server per module that uses it, per test session (per xdist worker); registering this module as
a plugin in tests/conftest.py would make it one in all. ``s3_target`` points boto3 at it through
the standard AWS variables and makes a fresh bucket for each test.
Nothing leaves 127.0.0.1: proxies, shared config files and instance metadata are switched off.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Target:
    endpoint: str
    bucket: str
    region: str
    client: Any

    def keys(self) -> set[str]:
        """Every key in the bucket."""
        found: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            found.update(item["Key"] for item in page.get("Contents", []))
        return found

    def put(self, key: str, body: bytes = b"x") -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def head(self, key: str) -> dict[str, Any]:
        return self.client.head_object(Bucket=self.bucket, Key=key)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto server running in a thread (port chosen by the OS)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_target(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> S3Target:
    """Credentials for moto in the environment and a new, empty bucket for this test."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    bucket = f"designrun-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    return S3Target(endpoint=moto_endpoint, bucket=bucket, region=REGION, client=client)
