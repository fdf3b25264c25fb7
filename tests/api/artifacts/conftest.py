"""Fixtures of the artifact tests: every test runs twice, on the local backend and on S3 (a moto
server on loopback, configured through the API.md environment variables). ``objects`` looks
into the store directly."""

from __future__ import annotations

import pytest

from tests.api.artifacts.support import LocalObjects
from tests.storage import s3server

# The moto server (one per session here) and a fresh bucket per test.
moto_endpoint = s3server.moto_endpoint
s3_target = s3server.s3_target


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
