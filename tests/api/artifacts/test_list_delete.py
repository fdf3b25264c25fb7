"""Listing a run's artifacts, and deleting a run's objects (API.md § Delete)."""

from __future__ import annotations

import io

from sqlalchemy import func, select

from tests.api.artifacts.support import (
    artifact_rows,
    register,
    upload,
)
from tests.factories import make_run, make_user, runner_headers, sign_in

# --- listing and deleting ----------------------------------------------------------------------


def test_owner_lists_artifacts_and_another_account_gets_404(backend, app, client):
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
        "downloadUrl",
    }
    assert first["runId"] == str(run.id)
    assert first["downloadUrl"] is None  # a reference outside the run's prefix
    content = f"/api/design/runs/{run.id}/artifacts/{uploaded['artifactId']}/content"
    assert second["downloadUrl"] == content
    with client.get(content) as r:
        if backend == "s3":  # a presigned GET (tests/api/artifacts/test_download.py)
            assert r.status_code == 302, r.get_json()
        else:
            assert r.data == b"png"
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
    objects.put(f"exports/{run.id}/c.txt", b"3")
    outside = register(
        client, app, run, {"artifactType": "c", "storageKey": f"exports/{run.id}/c.txt"}
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
