"""A store that is down: 503 storage_unavailable on every artifact path, nothing half-written.

The S3 endpoint is a loopback port nobody listens on (connection refused at once).
"""

from __future__ import annotations

import io

import pytest

from tests.api.artifacts.support import artifact_rows, register, upload
from tests.factories import make_run, make_user, runner_headers, sign_in
from tests.servers import free_port

pytestmark = pytest.mark.usefixtures("s3_target")  # the moto credentials in the environment


@pytest.fixture
def down_app(monkeypatch, app_factory):
    monkeypatch.setenv("STORAGE_BACKEND", "s3")
    monkeypatch.setenv("S3_BUCKET", "designrun-down")
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("S3_REGION", "us-east-1")
    return app_factory()


def assert_503(r):
    assert r.status_code == 503, r.get_json()
    assert r.get_json()["code"] == "storage_unavailable"


def test_upload_is_503_and_registers_nothing(down_app):
    client = down_app.test_client()
    run = make_run(down_app, make_user(down_app), status="running")
    assert_503(
        upload(client, down_app, run, {"artifactType": "f", "file": (io.BytesIO(b"1"), "a.txt")})
    )
    key = f"runs/{run.id}/a.bin"
    assert_503(register(client, down_app, run, {"artifactType": "f", "storageKey": key}))
    assert artifact_rows(down_app, run.id) == []


def test_download_is_503_and_upload_urls_still_work(down_app):
    client = down_app.test_client()
    owner = make_user(down_app)
    run = make_run(down_app, owner, status="running")
    # Presigning is local arithmetic: it does not need the store.
    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts/uploads",
        json={"fileName": "a.bin"},
        headers=runner_headers(down_app, run),
    )
    assert r.status_code == 200, r.get_json()
    # A reference registers without the store; an own key needs it (its size comes from it).
    r = register(client, down_app, run, {"artifactType": "f", "storageKey": "elsewhere/x"})
    assert r.status_code == 200
    from designrun.extensions import db
    from designrun.models import Artifact

    with down_app.app_context():
        artifact = Artifact(
            run_id=run.id, artifact_type="f", storage_key=f"runs/{run.id}/a.bin", metadata_={}
        )
        db.session.add(artifact)
        db.session.commit()
        artifact_id = artifact.id
    sign_in(client, owner)
    assert_503(client.get(f"/api/design/runs/{run.id}/artifacts/{artifact_id}/content"))
