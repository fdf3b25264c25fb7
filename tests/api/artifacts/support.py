"""Helpers for the artifact tests (API.md § POST /api/runner/runs/:runId/artifacts)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.factories import runner_headers

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
    pytest.param("RUNS/{other}/x.png", id="upper-case-runs-another-run"),
    pytest.param("runs", id="bare-runs"),
    pytest.param("k" * 256, id="256-byte-segment"),
]
